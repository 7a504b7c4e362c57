"""Keeping a project's data store and registry in order: `fdp verify`, `fdp gc`, `fdp delete`.

- `verify`: every file the local registry records under the data store, hashed against its
  recorded SHA-1 (missing, modified), the store's files no record names (orphaned), and
  optionally a remote's copies; `--repair` fetches good copies from the remote.
- `gc`: what nothing references (job folders, temporary outputs of killed runs, partial
  files, files no record names), listed, and deleted under the project lock once older than
  the retention period.
- `delete`: one data product version with the provenance only it needs, locally or on a
  remote that deletes data products (our server does; the reference registry does not).

Each walks the store and pages through the registry, so memory does not grow with the
number of products.
"""
