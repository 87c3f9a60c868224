"""Tools for running WhatsBot on one machine: the emulators harness (tests and `make dev`)."""
