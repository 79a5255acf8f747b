"""The job engine: verifications and aggregates compiled to SQL, checked, noised and sealed.

Views call :func:`sandbox.engine.verify.run_verification` and
:func:`sandbox.engine.aggregate.run_aggregate`; every rule lives here or below, none in a view.
"""
