"""Package discovery only; all metadata is in pyproject.toml.

components/, pipelines/ and the sample taxonomy/ sit at the repository root, where people expect them,
and install inside the labpipe package so that the installed `labpipe` CLI can compile and run them.
"""

from setuptools import find_namespace_packages, setup

# repository folder -> the package it installs as
ROOT_PACKAGES = {
    "components": "labpipe.components",
    "pipelines": "labpipe.pipelines",
    "taxonomy": "labpipe.sample_taxonomy",
}

packages = find_namespace_packages("src", include=["labpipe", "labpipe.*"])
for folder, package in ROOT_PACKAGES.items():
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_namespace_packages(folder)]

setup(
    packages=packages,
    package_dir={"": "src", **{package: folder for folder, package in ROOT_PACKAGES.items()}},
    package_data={"": ["*.yaml", "*.yml", "*.jinja", "*.j2", "*.json", "*.md", "*.txt", "*.pdf", "*.cfg"]},
    include_package_data=True,
)
