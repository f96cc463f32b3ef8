#!/bin/sh
# First start of the PostgreSQL volume: a role and a database for each Orthanc's index; the
# shared Orthanc (de-identified copies, reached by nginx) gets a role of its own. Each role
# connects to its own databases only (PUBLIC's CONNECT is revoked), Jisr's included.
# ORTHANC_DB_PASSWORD comes from infra/env/orthanc.env, SHARED_ORTHANC_DB_PASSWORD from
# infra/env/orthanc-shared.env.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v orthanc_password="$ORTHANC_DB_PASSWORD" \
     -v shared_password="$SHARED_ORTHANC_DB_PASSWORD" \
     -v jisr_db="$POSTGRES_DB" <<'SQL'
CREATE ROLE orthanc LOGIN PASSWORD :'orthanc_password';
CREATE DATABASE orthanc_local OWNER orthanc;
CREATE DATABASE orthanc_partner OWNER orthanc;
CREATE ROLE orthanc_shared LOGIN PASSWORD :'shared_password';
CREATE DATABASE orthanc_shared OWNER orthanc_shared;
REVOKE CONNECT ON DATABASE orthanc_local, orthanc_partner, orthanc_shared FROM PUBLIC;
REVOKE CONNECT ON DATABASE :"jisr_db" FROM PUBLIC;
SQL
