# Fixtures for every test directory: the network lab (tests/support/lab/) and stores on both
# database backends (tests/support/storage.py).
pytest_plugins = ["tests.support.lab.fixtures", "tests.support.storage"]
