"""The workload grouper: PodGroups for workloads' pods, as KAI-Scheduler's pod grouper makes them.

`rules.py` is the pure rule (pod + owner chain -> PodGroup spec), `objects.py` turns it into the API's
JSON, and `index.py` resolves owner chains from a set of objects (what simulate and replay use)."""
