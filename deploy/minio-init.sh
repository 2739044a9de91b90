#!/bin/sh
# One-shot: create Inspector's bucket in MinIO (idempotent), then exit 0.
set -eu
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${INSPECTOR_BUCKET:?}"
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if mc alias set inspector http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null; then
    break
  fi
  echo "minio not answering yet (attempt $attempt)"; sleep 2
done
mc mb --ignore-existing "inspector/$INSPECTOR_BUCKET"
# Versioning keeps every overwritten object: the store is the system of record.
mc version enable "inspector/$INSPECTOR_BUCKET"
echo "bucket $INSPECTOR_BUCKET ready"
