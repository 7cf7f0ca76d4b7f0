"""Coordinators: consumer groups (`group_coordinator`), committed offsets (`offsets`), producer state and
transactions. Each is a service of the `Broker`, started after the logs are loaded and stopped before they close.
"""
