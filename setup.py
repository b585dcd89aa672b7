"""Package discovery only (metadata is in pyproject.toml): ``data_modules/`` and ``callbacks/`` sit at the top level
of the repository and install inside the ``zoo`` namespace."""
from setuptools import find_packages, setup

extra = {"zoo.data_modules": "data_modules", "zoo.callbacks": "callbacks"}
packages = find_packages(include=["zoo", "zoo.*"])
for name, folder in extra.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(where=folder)]
package_dir = {"zoo": "zoo", **extra}
for name, folder in extra.items():
    for sub in find_packages(where=folder):
        package_dir[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
