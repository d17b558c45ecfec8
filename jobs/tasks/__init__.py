"""Jobs of several tasks: the planner (`plan`), the graph's transactions (`graph`) and how
tasks look on the wire (`views`). A simple edit is its own one task and needs none of it."""

from jobs.tasks.plan import is_graph, plan, task_key

__all__ = ["is_graph", "plan", "task_key"]
