"""A stochastic SIR epidemic in a closed population of 200, one day at a time (a chain
binomial): each susceptible person is infected with probability 1 - (1 - beta/N)^I per day,
and each infected one recovers with probability 1/7.

    python3 model.py BETA SEED

Records the number infected on each day as one output of a code run, through the FAIR Data
Pipeline (the config names the output after the parameters).
"""

from __future__ import annotations

import random
import sys

from fdp_tasks.api import Session

POPULATION = 200
RECOVERY = 1 / 7
DAYS = 120


def epidemic(beta: float, seed: int) -> list[tuple[int, int, int, int]]:
    """(day, susceptible, infected, recovered) for each day."""
    rng = random.Random(seed)  # noqa: S311 - a model's randomness, not a secret
    s, i, r = POPULATION - 1, 1, 0
    rows = [(0, s, i, r)]
    for day in range(1, DAYS + 1):
        risk = 1 - (1 - beta / POPULATION) ** i
        infected = sum(rng.random() < risk for _ in range(s))
        recovered = sum(rng.random() < RECOVERY for _ in range(i))
        s, i, r = s - infected, i + infected - recovered, r + recovered
        rows.append((day, s, i, r))
    return rows


def main(beta_text: str, seed_text: str) -> None:
    rows = epidemic(float(beta_text), int(seed_text))
    with Session() as fdp:
        (item,) = fdp.config["write"]
        with open(fdp.write(item["data_product"]), "w", encoding="utf-8") as out:
            out.write("day,susceptible,infected,recovered\n")
            out.writelines(f"{d},{s},{i},{r}\n" for d, s, i, r in rows)


if __name__ == "__main__":
    main(*sys.argv[1:3])
