"""Package discovery only; all metadata is in pyproject.toml.

components/ and pipelines/ sit at the repository root, where KFP authors expect them, and install as
labpipe.components and labpipe.pipelines so that the installed `labpipe` CLI can compile and run them.
"""

from setuptools import find_namespace_packages, setup

ROOT_PACKAGES = ("components", "pipelines")

packages = find_namespace_packages("src", include=["labpipe", "labpipe.*"])
packages += [f"labpipe.{p}" for p in find_namespace_packages(".", include=[f"{r}*" for r in ROOT_PACKAGES])]

setup(
    packages=packages,
    package_dir={"": "src", **{f"labpipe.{r}": r for r in ROOT_PACKAGES}},
    package_data={"": ["*.yaml", "*.yml", "*.jinja", "*.j2", "*.json", "*.md", "*.txt", "*.cfg"]},
    include_package_data=True,
)
