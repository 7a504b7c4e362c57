"""A SEIRS model with births and deaths, integrated with a fixed-step Runge-Kutta scheme.

Reads its parameters through the FAIR Data Pipeline and writes the trajectory (CSV) and a
figure (PNG); the session records both, with this script and the config, as one code run.
"""

from __future__ import annotations

import csv

from fdp_tasks.api import Session

DAYS_PER_YEAR = 365.25


def read_parameters(path: str) -> dict[str, float]:
    with open(path, newline="") as fh:
        return {row["param"]: float(row["value"]) for row in csv.DictReader(fh)}


def derivatives(state: tuple[float, ...], rates: dict[str, float]) -> tuple[float, ...]:
    s, e, i, r = state
    infection = rates["beta"] * s * i
    return (
        rates["mu"] - infection - rates["mu"] * s + rates["omega"] * r,
        infection - (rates["sigma"] + rates["mu"]) * e,
        rates["sigma"] * e - (rates["gamma"] + rates["alpha"] + rates["mu"]) * i,
        rates["gamma"] * i - (rates["omega"] + rates["mu"]) * r,
    )


def simulate(params: dict[str, float], years: float = 5.0, steps: int = 1000) -> list[tuple]:
    """Fractions S, E, I, R over time (in years)."""
    rates = {
        "alpha": params["alpha"],
        "gamma": DAYS_PER_YEAR / params["inv_gamma"],
        "omega": 1.0 / params["inv_omega"],
        "mu": 1.0 / params["inv_mu"],
        "sigma": DAYS_PER_YEAR / params["inv_sigma"],
    }
    # beta chosen so that the basic reproduction number is R0.
    rates["beta"] = (
        params["R0"]
        * (rates["gamma"] + rates["alpha"] + rates["mu"])
        * (rates["sigma"] + rates["mu"])
        / rates["sigma"]
    )
    dt = years / steps
    state = (0.999, 0.001, 0.0, 0.0)
    rows = [(0.0, *state)]
    for step in range(1, steps + 1):
        k1 = derivatives(state, rates)
        k2 = derivatives(tuple(x + dt / 2 * k for x, k in zip(state, k1, strict=True)), rates)
        k3 = derivatives(tuple(x + dt / 2 * k for x, k in zip(state, k2, strict=True)), rates)
        k4 = derivatives(tuple(x + dt * k for x, k in zip(state, k3, strict=True)), rates)
        state = tuple(
            x + dt / 6 * (a + 2 * b + 2 * c + d)
            for x, a, b, c, d in zip(state, k1, k2, k3, k4, strict=True)
        )
        rows.append((step * dt, *state))
    return rows


def write_csv(rows: list[tuple], path: str) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["time", "S", "E", "I", "R"])
        for row in rows:
            writer.writerow([f"{v:.6g}" for v in row])


def plot(rows: list[tuple], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    time = [r[0] for r in rows]
    for column, label in enumerate(["Susceptible", "Exposed", "Infected", "Recovered"], 1):
        ax.plot(time, [r[column] for r in rows], label=label)
    ax.set_xlabel("years")
    ax.set_ylabel("fraction of population")
    ax.set_title("SEIRS model")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    with Session() as fdp:
        params = read_parameters(fdp.read("SEIRS_model/parameters"))
        rows = simulate(params)
        write_csv(rows, fdp.write("SEIRS_model/results/model_output/python"))
        plot(rows, fdp.write("SEIRS_model/results/figure/python"))


if __name__ == "__main__":
    main()
