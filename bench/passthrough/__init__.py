"""Bare pass-through proxies: the floor a Python gateway is measured against."""
