"""`make bench`: the sync and the counter API measured against floors from the same run.

Every figure is a ratio against a floor measured in the same run, on the same
data and the same machine; absolute times only describe this machine.
"""
