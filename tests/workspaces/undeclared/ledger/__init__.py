"""Jobs of the undeclared-dependency test workspace."""
