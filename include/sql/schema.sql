-- Application schema (the tables the runbook's procedures touch). Idempotent.
CREATE TABLE IF NOT EXISTS user_uploads (
    id                bigserial PRIMARY KEY,
    user_id           text        NOT NULL,
    s3_bucket         text        NOT NULL,
    s3_key            text        NOT NULL,
    s3_url            text,
    original_filename text,
    content_type      text,
    file_size         bigint,
    uploaded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS user_uploads_user_id_idx ON user_uploads (user_id);

CREATE TABLE IF NOT EXISTS business_profiles (
    id             bigserial PRIMARY KEY,
    user_id        text        NOT NULL UNIQUE,
    business_name  text        NOT NULL,
    avatar_s3_url  text,
    logo_s3_url    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
