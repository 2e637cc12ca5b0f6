"""Where user code runs. The controller talks to an `Executor`; it never imports user code."""
