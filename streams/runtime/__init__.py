"""Running a compiled topology: consumer group and assignor, tasks, the processing loop and commits."""
