"""Driver side of lorasweep: spec validation, sweep construction, result store, analysis."""
