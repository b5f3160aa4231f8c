# setuptools' find() only looks under src/; the CLI package is mapped from the top-level
# commands/ folder (see [tool.setuptools] package-dir in pyproject.toml), so name it here.
from setuptools import find_packages, setup

setup(packages=find_packages("src") + ["reidtools.commands"])
