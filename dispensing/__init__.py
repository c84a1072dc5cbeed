"""Dispensing rules shared by every way a dispense reaches this deployment (a plain REST write,
a transaction entry, a hub-to-spoke message): when a prescription is complete."""
