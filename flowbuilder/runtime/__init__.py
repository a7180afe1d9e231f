"""The real-clock driver of the interpreter: passes over the store, run by APScheduler."""
