# The network lab fixtures (tests/lab/) for every test directory.
pytest_plugins = ["tests.lab.fixtures"]
