"""A plain script deployed ad hoc (no decorators)."""

if __name__ == "__main__":
    print("adhoc script ran")
