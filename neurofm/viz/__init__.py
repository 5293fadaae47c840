"""Every plot neurofm draws: matplotlib Figures, saved atomically when given a path."""
