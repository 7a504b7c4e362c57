"""The JSON schemas of fdp-tasks, installed as the package `fdp_tasks.schemas` (see the
[tool.setuptools] table of pyproject.toml), so that `fdp_tasks.resources` reads them with
importlib.resources wherever fdp-tasks is installed. The files stay here, at the top of the
source tree, for other tools to use."""
