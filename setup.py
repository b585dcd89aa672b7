"""Package discovery only (metadata is in pyproject.toml): ``data_modules/`` and ``callbacks/`` sit at the top level
of the repository and install inside the ``zoo`` namespace; ``results/`` installs as data."""

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

# results/*.csv and results/demo/*.csv (the measured numbers the cards show) install as zoo/results_data; a source
# checkout reads results/
packages.append("zoo.results_data")
package_dir["zoo.results_data"] = "results"

setup(packages=packages, package_dir=package_dir, package_data={"zoo.results_data": ["*.csv", "demo/*.csv"]})
