# Loads the deploycheck plugin for every run from this checkout (the suite and its self-tests).
pytest_plugins = ["deploycheck.pytest_plugin"]
