"""Runner, configuration, executors and CLI of the binauralization pipeline."""
