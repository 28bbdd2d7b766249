#!/bin/bash
# docker-compose only: creates the app database and role, and applies the app schema.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<'SQL'
CREATE ROLE app LOGIN PASSWORD 'app';
CREATE DATABASE app OWNER app;
SQL
psql -v ON_ERROR_STOP=1 --username app --dbname app -f /schema.sql
