# Fixtures for every test directory: the network lab (tests/lab/) and stores on both
# database backends (tests/storage.py).
pytest_plugins = ["tests.support.lab.fixtures", "tests.support.storage"]
