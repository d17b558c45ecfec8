"""vidjobs long-running processes: runner, relay, reaper, ledger, ffmpeg execution, CLI."""
