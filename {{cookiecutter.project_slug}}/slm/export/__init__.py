"""The export: the search's evaluator Olive runs and its report, and the other runtimes' formats."""
