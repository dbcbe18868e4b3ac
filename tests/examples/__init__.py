"""Small, real instances of every result type, one module per kind (``ex_<kind>.py``).

Each module defines ``example() -> rcvlab.result.Result``, built quickly (tiny arrays or a
tiny model, no network), with at least one NaN where the result type can hold one, so that
the common checks in ``tests/test_result_contract.py`` exercise the JSON round trip fully.
"""
