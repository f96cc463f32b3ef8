#!/bin/sh
# First start of the PostgreSQL volume: a role and a database for each Orthanc's index.
# ORTHANC_DB_PASSWORD comes from infra/env/orthanc.env.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v orthanc_password="$ORTHANC_DB_PASSWORD" <<'SQL'
CREATE ROLE orthanc LOGIN PASSWORD :'orthanc_password';
CREATE DATABASE orthanc_local OWNER orthanc;
CREATE DATABASE orthanc_partner OWNER orthanc;
SQL
