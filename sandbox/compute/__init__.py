"""Compute programs: operators' RestrictedPython run in a fresh, locked-down child process.

The public API lives in the submodules, on purpose not re-exported here: the child process
imports ``sandbox.compute.policy``, ``guards``, ``stats`` and ``shape`` (stdlib and
RestrictedPython only), and importing this package must not drag numpy or diffprivlib into it.

- ``compile``: ``compile_program(source)`` → ``CompiledProgram`` (sha256, analysis, bounds),
  or ``ProgramInvalid`` listing every problem with its line.
- ``runner``: ``run_program(...)`` → ``RunOutcome``; one fresh child per run, the wall around it.
- ``release``: ``release_exact`` and ``release_private`` (sample-and-aggregate, Laplace noise).
- ``errors``: the package's errors.

The product around the runtime (control database, services, workers):

- ``models``: the ``programs`` and ``compute_jobs`` tables.
- ``programs``: submission (compiled and analysed at once), review, reading.
- ``checks``: every check a job passes when queued and again when it starts.
- ``jobs``: queueing and reading jobs; ``queue``: claims, leases, lost workers.
- ``inputs``: the rows a job's program is given; ``execute``: one job's start, run and finish.
- ``worker``: the worker loop, and its process beside ``sandbox serve``.
"""
