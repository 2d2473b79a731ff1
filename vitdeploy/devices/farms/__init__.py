"""Hosted phone farms behind the one device interface (devices/backend.py).

``aws``: AWS Device Farm runs our own harness app with a generated test spec (testspec.py) and the
harness protocol, so its numbers are the harness's (SOURCE_HARNESS). ``qai-hub``: Qualcomm AI Hub
profiles the model with its own profiler (SOURCE_QAI_HUB). The boto3 / qai_hub clients are imported
lazily inside the backends; docs/farms.md says how to set each one up.
"""
