"""Putting files of the local data store on record in the registry: one storage location per
content (`locations`), and the register items of a config (`register`)."""
