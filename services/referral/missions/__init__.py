"""Visiting missions: a provider's team goes to the host hospital and sees a list of patients."""
