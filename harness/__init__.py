"""The fault harness: the fleet as real processes, a load with duplicates, a seeded fault
schedule, and an audit that fails on losses and on double effects. `python -m harness`."""
