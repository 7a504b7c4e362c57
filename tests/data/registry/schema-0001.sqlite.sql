CREATE TABLE users (
	id INTEGER NOT NULL, 
	username TEXT NOT NULL, 
	full_name TEXT, 
	email TEXT, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_users_username UNIQUE (username)
);
CREATE INDEX ix_users_username ON users (username);
CREATE TABLE author (
	id INTEGER NOT NULL, 
	name TEXT, 
	identifier TEXT, 
	uuid VARCHAR(36), 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_author_identifier UNIQUE (identifier), 
	CONSTRAINT uq_author_uuid UNIQUE (uuid)
);
CREATE INDEX ix_author_name ON author (name);
CREATE TABLE storage_root (
	id INTEGER NOT NULL, 
	root TEXT NOT NULL, 
	local BOOLEAN, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_storage_root_root UNIQUE (root)
);
CREATE TABLE file_type (
	id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	extension TEXT NOT NULL, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_file_type_name_extension UNIQUE (name, extension)
);
CREATE INDEX ix_file_type_name ON file_type (name);
CREATE TABLE namespace (
	id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	full_name TEXT, 
	website TEXT, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_namespace_name UNIQUE (name), 
	CONSTRAINT uq_namespace_full_name UNIQUE (full_name)
);
CREATE INDEX ix_namespace_name ON namespace (name);
CREATE TABLE issue (
	id INTEGER NOT NULL, 
	severity INTEGER, 
	description TEXT, 
	uuid VARCHAR(36), 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_issue_uuid UNIQUE (uuid)
);
CREATE TABLE user_author (
	id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	author_id INTEGER NOT NULL, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_user_author_user UNIQUE (user_id), 
	FOREIGN KEY(user_id) REFERENCES users (id), 
	FOREIGN KEY(author_id) REFERENCES author (id)
);
CREATE INDEX ix_user_author_author_id ON user_author (author_id);
CREATE INDEX ix_user_author_user_id ON user_author (user_id);
CREATE TABLE storage_location (
	id INTEGER NOT NULL, 
	path TEXT NOT NULL, 
	hash TEXT NOT NULL, 
	public BOOLEAN, 
	storage_root_id INTEGER NOT NULL, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_storage_location_storage_root_hash_public UNIQUE (storage_root_id, hash, public), 
	FOREIGN KEY(storage_root_id) REFERENCES storage_root (id)
);
CREATE INDEX ix_storage_location_storage_root_id ON storage_location (storage_root_id);
CREATE INDEX ix_storage_location_hash ON storage_location (hash);
CREATE TABLE auth_token (
	digest VARCHAR(64) NOT NULL, 
	user_id INTEGER NOT NULL, 
	created VARCHAR(40) NOT NULL, 
	PRIMARY KEY (digest), 
	FOREIGN KEY(user_id) REFERENCES users (id)
);
CREATE TABLE object (
	id INTEGER NOT NULL, 
	description TEXT, 
	storage_location_id INTEGER, 
	file_type_id INTEGER, 
	uuid VARCHAR(36), 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_object_uuid UNIQUE (uuid), 
	FOREIGN KEY(storage_location_id) REFERENCES storage_location (id), 
	FOREIGN KEY(file_type_id) REFERENCES file_type (id)
);
CREATE INDEX ix_object_storage_location_id ON object (storage_location_id);
CREATE INDEX ix_object_file_type_id ON object (file_type_id);
CREATE TABLE object_component (
	id INTEGER NOT NULL, 
	object_id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	description TEXT, 
	whole_object BOOLEAN, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_object_component_object_name UNIQUE (object_id, name), 
	FOREIGN KEY(object_id) REFERENCES object (id)
);
CREATE INDEX ix_object_component_name ON object_component (name);
CREATE INDEX ix_object_component_object_id ON object_component (object_id);
CREATE TABLE data_product (
	id INTEGER NOT NULL, 
	object_id INTEGER NOT NULL, 
	namespace_id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	version TEXT NOT NULL, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_data_product_namespace_name_version UNIQUE (namespace_id, name, version), 
	FOREIGN KEY(object_id) REFERENCES object (id), 
	FOREIGN KEY(namespace_id) REFERENCES namespace (id)
);
CREATE INDEX ix_data_product_object_id ON data_product (object_id);
CREATE INDEX ix_data_product_name ON data_product (name);
CREATE INDEX ix_data_product_namespace_id ON data_product (namespace_id);
CREATE TABLE code_repo_release (
	id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	version TEXT NOT NULL, 
	website TEXT, 
	object_id INTEGER NOT NULL, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_code_repo_release_name_version UNIQUE (name, version), 
	CONSTRAINT uq_code_repo_release_object UNIQUE (object_id), 
	FOREIGN KEY(object_id) REFERENCES object (id)
);
CREATE INDEX ix_code_repo_release_object_id ON code_repo_release (object_id);
CREATE INDEX ix_code_repo_release_name ON code_repo_release (name);
CREATE TABLE keyword (
	id INTEGER NOT NULL, 
	object_id INTEGER NOT NULL, 
	keyphrase TEXT NOT NULL, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_keyword_object_keyphrase UNIQUE (object_id, keyphrase), 
	FOREIGN KEY(object_id) REFERENCES object (id)
);
CREATE INDEX ix_keyword_keyphrase ON keyword (keyphrase);
CREATE INDEX ix_keyword_object_id ON keyword (object_id);
CREATE TABLE licence (
	id INTEGER NOT NULL, 
	object_id INTEGER NOT NULL, 
	licence_info TEXT NOT NULL, 
	identifier TEXT, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_licence_object_licence_info UNIQUE (object_id, licence_info), 
	FOREIGN KEY(object_id) REFERENCES object (id)
);
CREATE INDEX ix_licence_object_id ON licence (object_id);
CREATE TABLE key_value (
	id INTEGER NOT NULL, 
	object_id INTEGER NOT NULL, 
	"key" TEXT NOT NULL, 
	value TEXT NOT NULL, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_key_value_object_key UNIQUE (object_id, "key"), 
	FOREIGN KEY(object_id) REFERENCES object (id)
);
CREATE INDEX ix_key_value_object_id ON key_value (object_id);
CREATE INDEX ix_key_value_key ON key_value ("key");
CREATE TABLE quality_controlled (
	id INTEGER NOT NULL, 
	object_id INTEGER NOT NULL, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_quality_controlled_object UNIQUE (object_id), 
	FOREIGN KEY(object_id) REFERENCES object (id)
);
CREATE INDEX ix_quality_controlled_object_id ON quality_controlled (object_id);
CREATE TABLE code_run (
	id INTEGER NOT NULL, 
	run_date VARCHAR(40) NOT NULL, 
	description TEXT NOT NULL, 
	code_repo_id INTEGER, 
	model_config_id INTEGER, 
	submission_script_id INTEGER NOT NULL, 
	uuid VARCHAR(36), 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_code_run_uuid UNIQUE (uuid), 
	FOREIGN KEY(code_repo_id) REFERENCES object (id), 
	FOREIGN KEY(model_config_id) REFERENCES object (id), 
	FOREIGN KEY(submission_script_id) REFERENCES object (id)
);
CREATE INDEX ix_code_run_code_repo_id ON code_run (code_repo_id);
CREATE INDEX ix_code_run_model_config_id ON code_run (model_config_id);
CREATE INDEX ix_code_run_submission_script_id ON code_run (submission_script_id);
CREATE TABLE object__authors (
	owner_id INTEGER NOT NULL, 
	target_id INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	PRIMARY KEY (owner_id, target_id), 
	FOREIGN KEY(owner_id) REFERENCES object (id), 
	FOREIGN KEY(target_id) REFERENCES author (id)
);
CREATE INDEX ix_object__authors_target ON object__authors (target_id);
CREATE TABLE external_object (
	id INTEGER NOT NULL, 
	data_product_id INTEGER NOT NULL, 
	identifier TEXT, 
	alternate_identifier TEXT, 
	alternate_identifier_type TEXT, 
	primary_not_supplement BOOLEAN, 
	release_date VARCHAR(40), 
	title TEXT, 
	description TEXT, 
	original_store_id INTEGER, 
	last_updated VARCHAR(40), 
	updated_by_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_external_object_data_product UNIQUE (data_product_id), 
	FOREIGN KEY(data_product_id) REFERENCES data_product (id), 
	FOREIGN KEY(original_store_id) REFERENCES storage_location (id)
);
CREATE INDEX ix_external_object_data_product_id ON external_object (data_product_id);
CREATE INDEX ix_external_object_original_store_id ON external_object (original_store_id);
CREATE TABLE issue__component_issues (
	owner_id INTEGER NOT NULL, 
	target_id INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	PRIMARY KEY (owner_id, target_id), 
	FOREIGN KEY(owner_id) REFERENCES issue (id), 
	FOREIGN KEY(target_id) REFERENCES object_component (id)
);
CREATE INDEX ix_issue__component_issues_target ON issue__component_issues (target_id);
CREATE TABLE code_run__inputs (
	owner_id INTEGER NOT NULL, 
	target_id INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	PRIMARY KEY (owner_id, target_id), 
	FOREIGN KEY(owner_id) REFERENCES code_run (id), 
	FOREIGN KEY(target_id) REFERENCES object_component (id)
);
CREATE INDEX ix_code_run__inputs_target ON code_run__inputs (target_id);
CREATE TABLE code_run__outputs (
	owner_id INTEGER NOT NULL, 
	target_id INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	PRIMARY KEY (owner_id, target_id), 
	FOREIGN KEY(owner_id) REFERENCES code_run (id), 
	FOREIGN KEY(target_id) REFERENCES object_component (id)
);
CREATE INDEX ix_code_run__outputs_target ON code_run__outputs (target_id);
