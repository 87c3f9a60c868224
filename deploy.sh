#!/usr/bin/env bash
# Deploy the WhatsBot functions with gcloud. Minimal for now: the webhook only.
# Each function's source is staged with a copy of common/ beside its main.py.
set -euo pipefail
cd "$(dirname "$0")"
[ -f .env ] && set -a && . ./.env && set +a
: "${GOOGLE_CLOUD_PROJECT:?set GOOGLE_CLOUD_PROJECT}"
REGION=${REGION:-us-central1}

stage() {  # stage NAME -> prints the staged source folder
  local dir="build/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  cp "functions/$1/main.py" "functions/$1/requirements.txt" "$dir/"
  cp -r common "$dir/common"
  echo "$dir"
}

gcloud functions deploy whatsbot-webhook --gen2 --runtime=python312 --region="$REGION" \
  --project="$GOOGLE_CLOUD_PROJECT" --source="$(stage webhook)" --entry-point=webhook \
  --trigger-http --allow-unauthenticated \
  --set-env-vars="TOPIC_AUDIO=${TOPIC_AUDIO:-whatsapp-audio},TOPIC_TEXT=${TOPIC_TEXT:-whatsapp-text}" \
  --set-secrets="WHATSAPP_APP_SECRET=whatsapp-app-secret:latest,WHATSAPP_VERIFY_TOKEN=whatsapp-verify-token:latest"
