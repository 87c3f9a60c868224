#!/usr/bin/env bash
# Deploy WhatsBot to Google Cloud: APIs, secrets, topics, dead-lettering, Firestore, one service
# account per function, three gen2 HTTP functions and, for the two Pub/Sub-driven ones, an ordered
# push subscription of our own with OIDC auth. Safe to run again: it describes before it creates,
# so a second run only updates; a project deployed with Eventarc triggers by an older deploy.sh is
# moved over without losing a message (migrate_from_eventarc). `./deploy.sh --help` for the options.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ALL_FUNCTIONS="webhook transcriber responder"
SECRET_VARS="WHATSAPP_APP_SECRET WHATSAPP_VERIFY_TOKEN WHATSAPP_TOKEN OPENAI_API_KEY"
# Every gcloud call, printed as "+ gcloud …" (changes) or "? gcloud …" (reads, dry run), goes to
# fd 3 so that functions whose output is captured with $(…) can still print.
exec 3>&1

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [--dry-run] [--only webhook|transcriber|responder] [--destroy [--yes]]
       ./deploy.sh --stage-only DIR [--only NAME]

Deploys the WhatsBot pipeline to the Google Cloud project $GOOGLE_CLOUD_PROJECT.
Settings come from the environment, then from .env (the environment wins; DEPLOY_ENV_FILE
names another file). See docs/deploy.md and docs/configuration.md for every variable. A project
deployed with Eventarc triggers by an older deploy.sh is moved to push subscriptions without
losing a message (docs/deploy.md, "Moving from an older deploy.sh").

  --dry-run        print every gcloud command it would run; run none (reads are shown as "?")
  --only NAME      deploy (or destroy) one function and what it needs
  --destroy        delete what this script created (asks first; Firestore data is kept)
  --yes, -y        do not ask before --destroy
  --stage-only DIR stage each function's source (its folder + the common/ it imports) into DIR/NAME; no gcloud
  --help, -h       this text
EOF
}

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }
upper() { printf '%s' "$1" | tr '[:lower:]-' '[:upper:]_'; }

# ---------------------------------------------------------------------------- configuration
# .env is parsed, not sourced: it is data, and a value the environment already holds wins.
load_env_file() {
  local file=$1 line key value
  [ -f "$file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    key=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
    [ -z "${!key:-}" ] || continue
    if [[ $value =~ ^\"(.*)\"[[:space:]]*$ || $value =~ ^\'(.*)\'[[:space:]]*$ ]]; then
      value=${BASH_REMATCH[1]}
    fi
    [ -z "$value" ] || export "$key=$value"
  done <"$file"
}

configure() {
  local name
  : "${GOOGLE_CLOUD_PROJECT:?set GOOGLE_CLOUD_PROJECT (environment or .env) to your project id}"
  [ "$GOOGLE_CLOUD_PROJECT" != whatsbot-local ] ||
    die "GOOGLE_CLOUD_PROJECT is whatsbot-local, the emulators' id: set it to your Google Cloud project"
  PROJECT=$GOOGLE_CLOUD_PROJECT
  REGION=${REGION:-us-central1}
  PREFIX=${NAME_PREFIX:-whatsbot}
  # Service account ids are 6..30 characters: "<prefix>-transcriber-push" must fit.
  [[ $PREFIX =~ ^[a-z][a-z0-9-]{0,12}$ ]] ||
    die "NAME_PREFIX must be 1..13 lowercase letters, digits or '-', starting with a letter (got '$PREFIX')"
  TOPIC_AUDIO=${TOPIC_AUDIO:-whatsapp-audio}
  TOPIC_TEXT=${TOPIC_TEXT:-whatsapp-text}
  TOPIC_STATUS=${TOPIC_STATUS:-whatsapp-status}
  DLQ_TOPIC=${TOPIC_DEAD_LETTER:-$PREFIX-dead-letter}
  DLQ_SUBSCRIPTION=$DLQ_TOPIC-inspect
  APOLOGY_SUBSCRIPTION=$PREFIX-dead-letter-apology
  STATUS_SUBSCRIPTION=$PREFIX-status-push
  MAX_DELIVERY_ATTEMPTS=${MAX_DELIVERY_ATTEMPTS:-5}
  FIRESTORE_LOCATION=${FIRESTORE_LOCATION:-$REGION}
  if ! [[ $MAX_DELIVERY_ATTEMPTS =~ ^[0-9]+$ ]] || ((MAX_DELIVERY_ATTEMPTS < 5 || MAX_DELIVERY_ATTEMPTS > 100)); then
    die "MAX_DELIVERY_ATTEMPTS must be 5..100 (Pub/Sub's limits), got $MAX_DELIVERY_ATTEMPTS"
  fi
  if [ "$MODE" = deploy ]; then
    for name in $SELECTED; do timeout_seconds "$name" >/dev/null && check_instances "$name"; done # bad sizes stop here
    case ${CPU_BOOST:-on} in on | off) ;; *) die "CPU_BOOST must be on or off, got '$CPU_BOOST'" ;; esac
    case " $SELECTED " in *" responder "*) configure_attempt ;; esac
  fi
  # Never prompt: a half-answered prompt in the middle of a deploy helps nobody.
  export CLOUDSDK_CORE_DISABLE_PROMPTS=1
}

# The responder's attempt deadline is its function timeout. Its claim's lease is short and renewed
# while it works (common/store/lease.py): a living attempt keeps it through one failed renewal when
# CLAIM_LEASE_SECONDS >= 2 x CLAIM_RENEW_SECONDS + CLAIM_LEASE_MARGIN_SECONDS (unset, both are a
# quarter of the lease); otherwise a redelivery could take over a claim still being worked on.
configure_attempt() {
  local timeout name lease renew margin
  timeout=$(timeout_seconds responder)
  ATTEMPT_TIMEOUT_SECONDS=${ATTEMPT_TIMEOUT_SECONDS:-$timeout}
  CLAIM_LEASE_SECONDS=${CLAIM_LEASE_SECONDS:-20}
  if ! [[ $ATTEMPT_TIMEOUT_SECONDS =~ ^[0-9]+$ ]] || ((ATTEMPT_TIMEOUT_SECONDS > timeout)); then
    die "ATTEMPT_TIMEOUT_SECONDS=$ATTEMPT_TIMEOUT_SECONDS must be whole seconds within the responder's timeout ($timeout s); leave it unset to use the timeout"
  fi
  for name in CLAIM_LEASE_SECONDS CLAIM_RENEW_SECONDS CLAIM_LEASE_MARGIN_SECONDS; do
    [[ ${!name:-0} =~ ^[0-9]+$ ]] || die "$name must be whole seconds, got ${!name}"
  done
  lease=$((CLAIM_LEASE_SECONDS * 4)) # in quarter seconds: the defaults are a quarter of the lease
  renew=$((${CLAIM_RENEW_SECONDS:-0} * 4)) margin=$((${CLAIM_LEASE_MARGIN_SECONDS:-0} * 4))
  [ -n "${CLAIM_RENEW_SECONDS:-}" ] || renew=$CLAIM_LEASE_SECONDS
  [ -n "${CLAIM_LEASE_MARGIN_SECONDS:-}" ] || margin=$CLAIM_LEASE_SECONDS
  if ((renew == 0 || lease < 2 * renew + margin)); then
    die "CLAIM_LEASE_SECONDS=$CLAIM_LEASE_SECONDS must be at least 2 x CLAIM_RENEW_SECONDS + CLAIM_LEASE_MARGIN_SECONDS (unset, each is a quarter of the lease), with renewals: a living attempt could lose its claim to a redelivery. Raise CLAIM_LEASE_SECONDS or renew more often."
  fi
  export ATTEMPT_TIMEOUT_SECONDS CLAIM_LEASE_SECONDS
}

entry_point() { case $1 in webhook) say webhook ;; transcriber) say transcribe ;; responder) say respond ;; esac }
source_topic() { case $1 in transcriber) say "$TOPIC_AUDIO" ;; responder) say "$TOPIC_TEXT" ;; esac }
service_account() { say "$PREFIX-$1@$PROJECT.iam.gserviceaccount.com"; }
# The identity Pub/Sub pushes as (OIDC): it may invoke its one function and nothing else.
invoker_account() { say "$PREFIX-$1-push@$PROJECT.iam.gserviceaccount.com"; }
push_subscription() { say "$PREFIX-$1-push"; }

# The token_env names of ACTIONS_FILE (docs/actions.md): the responder's secrets too.
action_secrets() {
  [ -n "${ACTIONS_FILE:-}" ] || return 0
  [ -f "$ACTIONS_FILE" ] || die "ACTIONS_FILE=$ACTIONS_FILE: no such file"
  sed -nE "s/^[[:space:]-]*token_env:[[:space:]]*[\"']?([A-Za-z_][A-Za-z0-9_]*).*/\1/p" "$ACTIONS_FILE" | sort -u | paste -sd ' ' -
}

# The environment variable each secret is read from, and its Secret Manager name.
secret_vars() {
  case $1 in
    webhook) say "WHATSAPP_APP_SECRET WHATSAPP_VERIFY_TOKEN" ;;
    responder) say "WHATSAPP_TOKEN OPENAI_API_KEY $(action_secrets)" ;;
    *) say "WHATSAPP_TOKEN OPENAI_API_KEY" ;;
  esac
}
secret_name() {
  case $1 in
    WHATSAPP_APP_SECRET) say "$PREFIX-app-secret" ;;
    WHATSAPP_VERIFY_TOKEN) say "$PREFIX-verify-token" ;;
    WHATSAPP_TOKEN) say "$PREFIX-whatsapp-token" ;;
    OPENAI_API_KEY) say "$PREFIX-openai-api-key" ;;
    *) say "$PREFIX-action-$(printf '%s' "$1" | tr '[:upper:]_' '[:lower:]-')" ;; # an action's token_env
  esac
}

# Plain settings each function receives when they are set (docs/configuration.md). Secrets are
# never among them; EXTRA_ENV_VARS="A B" passes more names to every function.
env_vars() {
  case $1 in
    webhook) say "PUBLISH_TIMEOUT_SECONDS MAX_BODY_BYTES ALLOWED_USERS MAX_MESSAGE_AGE_HOURS ECHO_PAUSE_HOURS" ;;
    transcriber) say "WHATSAPP_API_BASE WHATSAPP_API_VERSION GRAPH_TIMEOUT_SECONDS OPENAI_BASE_URL OPENAI_ORG_ID OPENAI_PROJECT_ID OPENAI_TIMEOUT_SECONDS
      OPENAI_MAX_RETRIES TRANSCRIBE_BACKEND TRANSCRIBE_MODEL TRANSCRIBE_LANGUAGE GOOGLE_SPEECH_ENDPOINT MAX_AUDIO_BYTES
      MAX_AUDIO_SECONDS PUBLISH_TIMEOUT_SECONDS
      MAX_MESSAGE_AGE_HOURS MAX_AUDIO_SECONDS_PER_DAY LIMITS_TIMEZONE" ;;
    responder) say "WHATSAPP_API_BASE WHATSAPP_API_VERSION GRAPH_TIMEOUT_SECONDS OPENAI_BASE_URL OPENAI_ORG_ID OPENAI_PROJECT_ID OPENAI_MODEL
      VOICE_REPLY VOICE_REPLY_MAX_CHARS VOICE_REPLY_BITRATE TTS_MODEL TTS_VOICE TTS_INSTRUCTIONS TTS_TIMEOUT_SECONDS VOICE_ON_TEXT VOICE_OFF_TEXT
      OPENAI_TIMEOUT_SECONDS OPENAI_MAX_RETRIES SYSTEM_PROMPT VOICE_PROMPT VOICE_MODE HELP_TEXT
      RESET_TEXT UNSUPPORTED_TEXT VOICE_FAILED_TEXT MODEL_ERROR_TEXT HISTORY_MAX_CHARS
      HISTORY_MAX_TURNS HISTORY_TTL_DAYS ATTEMPT_TIMEOUT_SECONDS CLAIM_LEASE_SECONDS CLAIM_RENEW_SECONDS
      CLAIM_LEASE_MARGIN_SECONDS STATUS_WAIT_SECONDS CLAIM_TTL_DAYS
      OPENAI_MAX_TOKENS
      MAX_ACTION_CALLS ACTION_TIMEOUT_SECONDS ACTION_TRIES ACTION_MAX_RESULT_BYTES ACTION_RESULT_TTL_DAYS
      CONFIRM_MINUTES CONFIRM_YES_TEXT CONFIRM_NO_TEXT HANDOFF_TEXT HANDOFF_COOLDOWN_MINUTES
      ADMIN_USERS MAX_TURNS_PER_DAY MAX_TOKENS_PER_DAY MAX_AUDIO_SECONDS_PER_DAY LIMITS_TIMEZONE DAILY_TOKEN_BUDGET BUDGET_SHARDS GUARDRAILS_CACHE_SECONDS MAX_REPLY_PARTS MAX_MESSAGE_AGE_HOURS ECHO_PAUSE_HOURS NOT_ALLOWED_TEXT LIMIT_TEXT BUSY_TEXT SHORTENED_TEXT
      VISION_MODEL VISION_TIMEOUT_SECONDS IMAGE_PROMPT DOCUMENT_PROMPT MAX_IMAGE_BYTES MAX_DOCUMENT_BYTES MAX_DOCUMENT_PAGES
      MEDIA_FAILED_TEXT MEDIA_TOO_LARGE_TEXT UNSUPPORTED_FILE_TEXT MEDIA_REFUSED_TEXT TYPING_REFRESH_SECONDS
      KNOWLEDGE_TOP_K KNOWLEDGE_MIN_SIMILARITY KNOWLEDGE_CITE KNOWLEDGE_CITE_LABEL KNOWLEDGE_QUERY_TURNS
      KNOWLEDGE_CONTEXT_WEIGHT KNOWLEDGE_CACHE_SECONDS KNOWLEDGE_TIMEOUT_SECONDS" ;;
  esac
  say "${EXTRA_ENV_VARS:-}"
}

# Sizes per function; each overridable as NAME_KEY, e.g. RESPONDER_MEMORY=1Gi. Concurrency above
# 1 needs a whole vCPU on gen2, hence cpu=1; the transcriber gets room to decode audio. The
# responder's 512Mi holds 4 media turns of 20 MB PDFs at once (~76 MiB each, measured), the rest wait.
# MIN_INSTANCES sets the warm instances of every function at once (NAME_MIN_INSTANCES wins): each
# one is billed while idle, and none means a cold start after a quiet spell.
setting() {
  local var key index=0 sizes
  case $1 in #          MEMORY CPU TIMEOUT CONCURRENCY MIN_INSTANCES MAX_INSTANCES
    webhook) sizes=(512Mi 1 60s 20 0 10) ;;
    transcriber) sizes=(1Gi 1 300s 4 0 5) ;;
    responder) sizes=(512Mi 1 120s 8 0 10) ;;
  esac
  for key in MEMORY CPU TIMEOUT CONCURRENCY MIN_INSTANCES MAX_INSTANCES; do
    [ "$key" = "$2" ] && break
    index=$((index + 1))
  done
  var="$(upper "$1")_$2"
  [ "$2" != MIN_INSTANCES ] || sizes[index]=${MIN_INSTANCES:-${sizes[$index]}}
  printf '%s' "${!var:-${sizes[$index]}}"
}

# Warm instances: whole numbers, no more than the function may have.
check_instances() {
  local min max
  min=$(setting "$1" MIN_INSTANCES) max=$(setting "$1" MAX_INSTANCES)
  [[ $min =~ ^[0-9]+$ && $max =~ ^[0-9]+$ ]] ||
    die "$(upper "$1")_MIN_INSTANCES=$min and _MAX_INSTANCES=$max must be whole numbers (MIN_INSTANCES sets every function's minimum)"
  ((10#$min <= 10#$max)) || die "$(upper "$1")_MIN_INSTANCES=$min is above its MAX_INSTANCES=$max"
}

# timeout_seconds NAME: the function's TIMEOUT in seconds (gcloud takes 120, 120s, 2m, 1h30m).
timeout_seconds() {
  local timeout rest seconds=0 number
  timeout=$(setting "$1" TIMEOUT) rest=$(setting "$1" TIMEOUT)
  [[ $rest =~ ^([0-9]+[hms]?)+$ ]] || die "$(upper "$1")_TIMEOUT=$timeout is not a duration like 120s, 5m or 1h"
  while [[ $rest =~ ^([0-9]+)([hms]?)(.*)$ ]]; do
    number=$((10#${BASH_REMATCH[1]}))
    case ${BASH_REMATCH[2]} in h) number=$((number * 3600)) ;; m) number=$((number * 60)) ;; esac
    seconds=$((seconds + number)) rest=${BASH_REMATCH[3]}
  done
  say "$seconds"
}

# ack_deadline NAME: Pub/Sub waits for the function's answer as long as it may run, within Pub/Sub's
# 10..600 seconds; a push not answered by then is redelivered.
ack_deadline() {
  local seconds
  seconds=$(timeout_seconds "$1")
  if ((seconds < 10)); then seconds=10; fi
  if ((seconds > 600)); then seconds=600; fi
  say "$seconds"
}

# ------------------------------------------------------------------------------ gcloud calls
show() {
  local prefix=$1 line="" arg
  shift
  for arg in "$@"; do line+=" $(printf '%q' "$arg")"; done
  printf '%s%s\n' "$prefix" "$line" >&3
}

# mutate ARGS…: a gcloud call that changes something; printed, and skipped by --dry-run.
mutate() {
  show + gcloud "$@" --project="$PROJECT"
  [ "$DRY_RUN" = 1 ] || gcloud "$@" --project="$PROJECT"
}

# mutate_with_secret VAR ARGS…: the same, with $VAR's value on stdin, never on a command line.
mutate_with_secret() {
  local var=$1
  shift
  show + gcloud "$@" --project="$PROJECT"
  printf '    (stdin: the value of %s)\n' "$var" >&3
  [ "$DRY_RUN" = 1 ] || printf '%s' "${!var}" | gcloud "$@" --project="$PROJECT"
}

# query ARGS…: a read whose output we need. A dry run prints it, runs nothing and fails, so the
# caller falls back to its "not there yet" answer.
query() {
  [ "$DRY_RUN" = 0 ] || { show '?' gcloud "$@" --project="$PROJECT"; return 1; }
  gcloud "$@" --project="$PROJECT" 2>/dev/null
}

# exists ARGS…: does this describe succeed? A dry run assumes "no" when deploying (so the plan
# shows every create) and "yes" when destroying (so it shows every delete).
exists() {
  if [ "$DRY_RUN" = 1 ]; then
    show '?' gcloud "$@" --project="$PROJECT"
    [ "$MODE" = destroy ]
  else
    gcloud "$@" --project="$PROJECT" >/dev/null 2>&1
  fi
}

# retry CMD…: IAM needs a few seconds before a new service account can be granted anything.
retry() {
  local attempt
  for attempt in 5 10 20; do
    "$@" && return 0
    say "   retrying in ${attempt}s (IAM changes take a moment to propagate)"
    sleep "$attempt"
  done
  "$@"
}

# grant ROLE MEMBER RESOURCE GROUP…: an IAM binding on one resource (adding it twice is a no-op).
grant() {
  local role=$1 member=$2 resource=$3
  shift 3
  retry mutate "$@" add-iam-policy-binding "$resource" --member="$member" --role="$role" --format=none
}

# ------------------------------------------------------------------------------ the pieces
enable_apis() {
  step "APIs"
  mutate services enable cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com \
    artifactregistry.googleapis.com pubsub.googleapis.com \
    secretmanager.googleapis.com firestore.googleapis.com iam.googleapis.com logging.googleapis.com \
    cloudresourcemanager.googleapis.com
}

# Created from the environment when missing; a new version only when the value changed.
ensure_secret() {
  local var=$1 name current
  name=$(secret_name "$var")
  if exists secrets describe "$name"; then
    [ -n "${!var:-}" ] || { say "   $name: kept ($var is not set here)"; return; }
    current=$(gcloud secrets versions access latest --secret="$name" --project="$PROJECT" 2>/dev/null) || current=
    [ "$current" != "${!var}" ] || { say "   $name: unchanged"; return; }
    mutate_with_secret "$var" secrets versions add "$name" --data-file=-
  elif [ -n "${!var:-}" ]; then
    mutate_with_secret "$var" secrets create "$name" --replication-policy=automatic --data-file=-
  elif [ "$DRY_RUN" = 1 ]; then
    say "   ($var is not set: a real run stops here until it is)"
  else
    die "secret $name does not exist yet: set $var (environment or .env) and run again"
  fi
}

ensure_messaging() {
  local topic
  step "Pub/Sub topics, the status topic and the dead-letter topic"
  for topic in "$TOPIC_AUDIO" "$TOPIC_TEXT" "$TOPIC_STATUS" "$DLQ_TOPIC"; do
    exists pubsub topics describe "$topic" || mutate pubsub topics create "$topic"
  done
  # Dead letters are kept for inspection; never-expiring, since it may sit idle for months.
  exists pubsub subscriptions describe "$DLQ_SUBSCRIPTION" ||
    mutate pubsub subscriptions create "$DLQ_SUBSCRIPTION" --topic="$DLQ_TOPIC" \
      --message-retention-duration=7d --expiration-period=never
  # Pub/Sub itself moves a message to the dead-letter topic, as its service agent.
  grant roles/pubsub.publisher "serviceAccount:$PUBSUB_AGENT" "$DLQ_TOPIC" pubsub topics
}

# Two bots in one project must not read each other's topics: another prefix's push subscription
# on our topic would answer our users with the other bot (and we theirs). Checked before anything
# changes.
check_topics_are_ours() {
  local name topic sub rows rest
  rows=$(query pubsub subscriptions list --format='value(name,topic)') || return 0
  for name in transcriber responder; do
    case " $SELECTED " in *" $name "*) ;; *) continue ;; esac
    topic="projects/$PROJECT/topics/$(source_topic "$name")"
    while IFS=$'\t' read -r sub rest; do
      sub=${sub##*/}
      if [ "$rest" = "$topic" ] && [[ $sub == *-"$name"-push ]] && [ "$sub" != "$(push_subscription "$name")" ]; then
        die "topic ${topic##*/} is already read by $sub (another NAME_PREFIX): give this bot its own TOPIC_AUDIO and TOPIC_TEXT"
      fi
    done <<<"$rows"
  done
}

ensure_firestore() {
  step "Firestore (claims, conversation history, the knowledge base)"
  local type collection ttls
  type=$(query firestore databases describe --database='(default)' --format='value(type)') || type=
  case $type in
    FIRESTORE_NATIVE) say "   database (default): native mode" ;;
    "") mutate firestore databases create --database='(default)' --location="$FIRESTORE_LOCATION" \
      --type=firestore-native ;;
    *) die "the (default) Firestore database is in $type; the responder needs native mode (use another project)" ;;
  esac
  # Old claims and idle conversations expire by themselves (the code sets expireAt).
  for collection in claims sent conversations; do
    ttls=$(query firestore fields ttls list --collection-group="$collection" --format='value(name)') || ttls=
    if [[ $ttls == */fields/expireAt* ]]; then
      say "   TTL on $collection.expireAt: already set"
    else
      mutate firestore fields ttls update expireAt --collection-group="$collection" --enable-ttl --async
    fi
  done
  ensure_vector_index
}

# The knowledge base's nearest-passage query needs a vector index on Google Cloud (the emulator
# needs none): one field, `embedding`, on the passages of every version (common/knowledge/base.py).
# Its size is the embedding model's (text-embedding-3-small: 1536; EMBEDDING_DIMENSIONS if set).
ensure_vector_index() {
  local dimension=${EMBEDDING_DIMENSIONS:-1536} indexes
  if ! [[ $dimension =~ ^[0-9]+$ ]] || ((dimension < 1 || dimension > 2048)); then
    die "EMBEDDING_DIMENSIONS must be 1..2048 (Firestore's vector limit), got $dimension"
  fi
  indexes=$(query firestore indexes composite list --format=json) || indexes=
  if [[ $indexes == *"/collectionGroups/knowledgePassages/"* && $indexes == *"\"dimension\": $dimension"* ]]; then
    say "   vector index on knowledgePassages.embedding ($dimension dimensions): already there"
  else
    mutate firestore indexes composite create --collection-group=knowledgePassages --query-scope=COLLECTION \
      --field-config="field-path=embedding,vector-config={\"dimension\":\"$dimension\",\"flat\":\"{}\"}" --async
    say "   (the vector index builds in a few minutes; until then the bot answers without its documents)"
  fi
}

# One identity per function holding only what that function uses.
ensure_identity() {
  local name=$1 sa var member
  sa=$(service_account "$name")
  member="serviceAccount:$sa"
  step "$name: service account and its grants"
  exists iam service-accounts describe "$sa" ||
    mutate iam service-accounts create "$PREFIX-$name" --display-name="WhatsBot $name"
  for var in $(secret_vars "$name"); do
    grant roles/secretmanager.secretAccessor "$member" "$(secret_name "$var")" secrets
  done
  case $name in
    webhook) # every message enters by the transcriber's topic (order per user across types); Meta's
      # statuses of our sent parts go to the responder by the status topic
      grant roles/pubsub.publisher "$member" "$TOPIC_AUDIO" pubsub topics
      grant roles/pubsub.publisher "$member" "$TOPIC_STATUS" pubsub topics ;;
    transcriber) grant roles/pubsub.publisher "$member" "$TOPIC_TEXT" pubsub topics ;;
  esac
  # Firestore for every function that ships the store (the responder; the transcriber reads the
  # day's voice seconds). Firestore has no per-collection IAM: datastore.user is its narrowest data role.
  if uses_firestore "$name"; then
    retry mutate projects add-iam-policy-binding "$PROJECT" --member="$member" \
      --role=roles/datastore.user --condition=None --format=none
  fi
}

# Whether a function's code reads or writes Firestore: it is staged with common/store.
uses_firestore() {
  [[ " $(common_packages "$1") " == *" store "* ]]
}

# The push identity of a Pub/Sub-driven function: no roles of its own; run.invoker on its one
# function comes once the function exists (allow_push). Pub/Sub's agent mints its OIDC tokens
# (needed on projects created before April 2021).
ensure_invoker() {
  local name=$1 invoker
  invoker=$(invoker_account "$name")
  exists iam service-accounts describe "$invoker" ||
    mutate iam service-accounts create "$(push_subscription "$name")" --display-name="WhatsBot push to $name"
  grant roles/iam.serviceAccountTokenCreator "serviceAccount:$PUBSUB_AGENT" "$invoker" iam service-accounts
}

# roles/run.invoker on this function's Cloud Run service, for its push identity only.
allow_push() {
  retry mutate functions add-invoker-policy-binding "$PREFIX-$1" --region="$REGION" \
    --member="serviceAccount:$(invoker_account "$1")" --format=none
}

# The packages of common/ each function imports (tests/test_deploy_staging.py checks this list
# against the imports main.py reaches); common/*.py (config, log, startup) go to every function.
common_packages() {
  case $1 in
    webhook) echo "meta bus guard webhook" ;;
    transcriber) echo "meta bus store ai guard transcriber" ;;
    responder) echo "meta bus store ai guard knowledge actions responder" ;;
  esac
}

# stage NAME DIR: the function's folder plus the common/ it imports, which is all that gcloud
# uploads. Lock inputs (requirements*.in) and other variants stay home; the transcriber's
# google/sphinx backends need the speech lock, staged as the requirements.txt the builder installs.
stage() {
  local name=$1 dest="$2/$1" backend speech package
  [ -f "$ROOT/functions/$name/main.py" ] || die "functions/$name/main.py is missing"
  rm -rf "$dest" && mkdir -p "$dest/common"
  cp -R "$ROOT/functions/$name/." "$dest/"
  cp "$ROOT"/common/*.py "$dest/common/"
  for package in $(common_packages "$name"); do cp -R "$ROOT/common/$package" "$dest/common/$package"; done
  find "$dest" -name __pycache__ -type d -prune -exec rm -rf {} +
  rm -f "$dest"/requirements*.in "$dest"/requirements-*.txt
  if [ "$name" = responder ] && [ -n "${ACTIONS_FILE:-}" ]; then # read at start as ACTIONS_FILE=actions.yaml
    [ -f "$ACTIONS_FILE" ] || die "ACTIONS_FILE=$ACTIONS_FILE: no such file"
    cp "$ACTIONS_FILE" "$dest/actions.yaml"
  fi
  if [ "$name" = transcriber ]; then
    backend=${TRANSCRIBE_BACKEND:-openai}
    case $backend in
      openai) ;;
      google | sphinx)
        speech="$ROOT/functions/transcriber/requirements-speech.txt"
        [ -f "$speech" ] ||
          die "TRANSCRIBE_BACKEND=$backend needs functions/transcriber/requirements-speech.txt (the locked speech dependencies): it is missing"
        cp "$speech" "$dest/requirements.txt" ;;
      *) die "TRANSCRIBE_BACKEND must be openai, google or sphinx, got '$backend'" ;;
    esac
  fi
  say "$dest"
}

# A YAML file, not --set-env-vars: prompts hold commas, quotes and newlines.
yaml_entry() {
  local value=$2
  value=${value//\\/\\\\} value=${value//\"/\\\"}
  value=${value//$'\n'/\\n} value=${value//$'\r'/\\r} value=${value//$'\t'/\\t}
  printf '%s: "%s"\n' "$1" "$value"
}

write_env_file() {
  local name=$1 var
  yaml_entry GOOGLE_CLOUD_PROJECT "$PROJECT"
  yaml_entry THREADS "$(setting "$name" CONCURRENCY)" # Python serves concurrency with threads
  [ "$name" != transcriber ] || yaml_entry TOPIC_TEXT "$TOPIC_TEXT"
  if [ "$name" = responder ]; then
    # Its media turns share the instance's memory (common/responder/media_memory.py): tell it how much.
    yaml_entry INSTANCE_MEMORY "$(setting "$name" MEMORY)"
    # glibc: blocks of 1 MiB and more are mmapped, so a media turn's buffers go back to the system
    # when freed (by default the heap keeps them, and a 20 MB PDF's turn peaked ~25 MiB higher).
    yaml_entry MALLOC_MMAP_THRESHOLD_ 1048576
  fi
  [ "$name" != webhook ] || yaml_entry TOPIC_AUDIO "$TOPIC_AUDIO"
  [ "$name" != responder ] || [ -z "${ACTIONS_FILE:-}" ] || yaml_entry ACTIONS_FILE actions.yaml # staged beside main.py
  [ "$name" != webhook ] || yaml_entry TOPIC_STATUS "$TOPIC_STATUS"
  for var in $(env_vars "$name"); do
    [ -n "${!var:-}" ] || continue
    case " $SECRET_VARS $(action_secrets) " in *" $var "*) continue ;; esac # secrets only ever via --set-secrets
    if [[ ${!var} =~ ://(localhost|127\.|0\.0\.0\.0|\[::1\]) ]]; then
      say "   $var points at this machine (${!var}): not passed to the cloud" >&2
      continue
    fi
    yaml_entry "$var" "${!var}"
  done
}

deploy_function() {
  local name=$1 fn="$PREFIX-$1" sa source secrets="" var
  sa=$(service_account "$name")
  step "$name: deploy $fn"
  source=$(stage "$name" "$BUILD_DIR")
  write_env_file "$name" >"$BUILD_DIR/$name.env.yaml"
  say "   settings: $(cut -d: -f1 "$BUILD_DIR/$name.env.yaml" | paste -sd ' ' -)"
  for var in $(secret_vars "$name"); do secrets+="${secrets:+,}$var=$(secret_name "$var"):latest"; done
  local args=(functions deploy "$fn" --gen2 --runtime=python312 --region="$REGION" --source="$source"
    --entry-point="$(entry_point "$name")" --service-account="$sa"
    --memory="$(setting "$name" MEMORY)" --cpu="$(setting "$name" CPU)"
    --timeout="$(setting "$name" TIMEOUT)" --concurrency="$(setting "$name" CONCURRENCY)"
    --min-instances="$(setting "$name" MIN_INSTANCES)" --max-instances="$(setting "$name" MAX_INSTANCES)"
    --env-vars-file="$BUILD_DIR/$name.env.yaml" --set-secrets="$secrets" --trigger-http)
  if [ "$name" = webhook ]; then
    args+=(--allow-unauthenticated) # Meta calls it; the signature check guards it
  else
    args+=(--no-allow-unauthenticated) # only its push subscription's identity may call it
  fi
  mutate "${args[@]}"
  ensure_cpu_boost "$name"
}

# Startup CPU boost: more CPU while an instance starts (imports, clients, the first request), billed
# for that time only. gcloud sets it on the function's Cloud Run service, not with `functions
# deploy` (which has no such flag); checked first, so a run that finds it set changes nothing.
ensure_cpu_boost() {
  local fn="$PREFIX-$1" want=${CPU_BOOST:-on} annotations have=off
  annotations=$(query run services describe "$fn" --region="$REGION" \
    --format='value(spec.template.metadata.annotations)') || annotations=
  [[ ";$annotations;" != *";run.googleapis.com/startup-cpu-boost=true;"* ]] || have=on
  if [ "$have" = "$want" ]; then
    say "   startup CPU boost: $want"
  elif [ "$want" = on ]; then
    mutate run services update "$fn" --region="$REGION" --cpu-boost --quiet
  else
    mutate run services update "$fn" --region="$REGION" --no-cpu-boost --quiet
  fi
}

function_url() {
  local url
  url=$(query functions describe "$PREFIX-$1" --gen2 --region="$REGION" --format='value(serviceConfig.uri)') || url=
  [ -n "$url" ] || [ "$DRY_RUN" = 1 ] || die "$PREFIX-$1 has no URL"
  say "${url:-https://URL_OF_$(upper "$PREFIX-$1")}"
}

# ------------------------------------------------------------------------------ subscriptions
# What describe prints for a subscription, and what we want it to print (one tab-separated line:
# gcloud shows durations in seconds, "True" for ordering, nothing for a never-expiring one).
SUBSCRIPTION_FIELDS="topic,pushConfig.pushEndpoint,pushConfig.oidcToken.serviceAccountEmail,ackDeadlineSeconds"
SUBSCRIPTION_FIELDS+=",deadLetterPolicy.deadLetterTopic,deadLetterPolicy.maxDeliveryAttempts"
SUBSCRIPTION_FIELDS+=",retryPolicy.minimumBackoff,retryPolicy.maximumBackoff,messageRetentionDuration"
SUBSCRIPTION_FIELDS+=",expirationPolicy.ttl,enableMessageOrdering"
MIN_RETRY_DELAY=10s MAX_RETRY_DELAY=600s RETENTION=7d
STATUS_SUBSCRIPTION_RETENTION=10m # Pub/Sub's least: a part's status that late helps nobody

# ensure_subscription NAME TOPIC URL PUSH_ACCOUNT ACK DLQ ORDERED [RETENTION]: describe, then create
# with every setting at once or converge what `update` can change. URL "" = no push yet (messages
# wait). DLQ "" = no dead-letter policy. What cannot change (topic, ordering) is reported in RECREATE.
ensure_subscription() {
  local sub=$1 topic=$2 url=$3 account=$4 ack=$5 dlq=$6 ordered=$7 retention=${8:-$RETENTION} have want settings=()
  settings=(--ack-deadline="$ack" --min-retry-delay="$MIN_RETRY_DELAY" --max-retry-delay="$MAX_RETRY_DELAY"
    --message-retention-duration="$retention" --expiration-period=never)
  [ -z "$url" ] || settings+=(--push-endpoint="$url" --push-auth-service-account="$account")
  [ -z "$dlq" ] || settings+=(--dead-letter-topic="$dlq" --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS")
  want="projects/$PROJECT/topics/$topic"$'\t'"$url"$'\t'"${url:+$account}"$'\t'"$ack"
  want+=$'\t'"${dlq:+projects/$PROJECT/topics/$dlq}"$'\t'"${dlq:+$MAX_DELIVERY_ATTEMPTS}"
  want+=$'\t'"$MIN_RETRY_DELAY"$'\t'"$MAX_RETRY_DELAY"$'\t'"$(duration_seconds "$retention")s"$'\t'$'\t'"${ordered:+True}"
  if ! exists pubsub subscriptions describe "$sub"; then
    mutate pubsub subscriptions create "$sub" --topic="$topic" "${settings[@]}" ${ordered:+--enable-message-ordering}
    return 0
  fi
  have=$(query pubsub subscriptions describe "$sub" --format="value($SUBSCRIPTION_FIELDS)") || have=
  if [ "$have" = "$want" ]; then
    say "   $sub: unchanged"
    return 0
  fi
  if [ "${have%%$'\t'*}" != "projects/$PROJECT/topics/$topic" ] || [ "${have##*$'\t'}" != "${ordered:+True}" ]; then
    recreate_advice "$sub" "$topic" "${settings[@]}" ${ordered:+--enable-message-ordering}
  fi
  mutate pubsub subscriptions update "$sub" "${settings[@]}"
}

# A subscription's topic and ordering are fixed at creation. Moving its backlog to a new one
# without a gap: a snapshot keeps what is unacked plus everything published after it, and a seek
# hands that to the new subscription (duplicates are harmless: the responder claims each id).
recreate_advice() {
  local sub=$1 topic=$2 line
  shift 2
  line=$(show "" gcloud pubsub subscriptions create "$sub" --topic="$topic" "$@" --project="$PROJECT" 3>&1)
  RECREATE+="
$sub must be made again (its topic or message ordering cannot change). Run, in this order:
  gcloud pubsub snapshots create $sub-recreate --subscription=$sub --project=$PROJECT
  gcloud pubsub subscriptions delete $sub --project=$PROJECT
 $line
  gcloud pubsub subscriptions seek $sub --snapshot=$sub-recreate --project=$PROJECT
  gcloud pubsub snapshots delete $sub-recreate --project=$PROJECT
then ./deploy.sh again (it grants what the new subscription needs). If its topic changed, the
snapshot (old topic) cannot be seeked to: skip the seek and wait until $sub has no unacked
messages before deleting it.
"
}

# The push subscription that feeds NAME: ordered by user, OIDC as its push identity, dead-lettered,
# acked when the function answers (ack deadline = its timeout), messages kept 7 days.
ensure_push() {
  local name=$1 url=$2 sub
  sub=$(push_subscription "$name")
  ensure_subscription "$sub" "$(source_topic "$name")" "$url" "$(invoker_account "$name")" \
    "$(ack_deadline "$name")" "$DLQ_TOPIC" ordered
  # Dead-lettering: Pub/Sub's agent acks the failed message on this subscription.
  grant roles/pubsub.subscriber "serviceAccount:$PUBSUB_AGENT" "$sub" pubsub subscriptions
}

# deploy_pushed NAME: a private HTTP function fed by its own push subscription.
deploy_pushed() {
  local name=$1
  ensure_invoker "$name"
  migrate_from_eventarc "$name"
  deploy_function "$name"
  allow_push "$name"
  finish_migration "$name"
  step "$name: push subscription $(push_subscription "$name")"
  ensure_push "$name" "$(function_url "$name")"
}

# ------------------------------------------------------------------------------ migration
# A project deployed by the previous deploy.sh has NAME as an Eventarc-triggered function
# (eventTrigger in describe). gcloud cannot turn a gen2 function's trigger into HTTP in place,
# and the name (and so the URL and the logs) should stay, so the script does it in steps:
#   1. create our subscription WITHOUT a push endpoint: from now on every message waits in it,
#      and waiting counts no delivery attempt (a push to a missing endpoint would, and could
#      dead-letter messages during the minutes of a build);
#   2. snapshot the trigger's own subscription: its backlog (failed messages awaiting a retry)
#      plus everything published after, so nothing is lost when the trigger goes;
#   3. delete the old function (its trigger and subscription go with it);
#   4. deploy the HTTP function under the same name, let the push identity invoke it;
#   5. seek our subscription to the snapshot (finish_migration), delete the snapshot, and only
#      then give the subscription its push endpoint: the waiting messages flow, in order.
# Messages the old function handled between steps 1 and 3 may arrive twice; the responder's claim
# answers each message id once. A run that stops half-way resumes: step 5 runs whenever the
# snapshot exists.
migrate_from_eventarc() {
  local name=$1 fn="$PREFIX-$1" trigger old sub
  trigger=$(query functions describe "$fn" --gen2 --region="$REGION" --format='value(eventTrigger.trigger)') || trigger=
  [ -n "$trigger" ] || return 0
  sub=$(push_subscription "$name")
  step "$name: move $fn from its Eventarc trigger to $sub (nothing is lost: messages wait in $sub)"
  old=$(query eventarc triggers describe "${trigger##*/}" --location="$REGION" \
    --format='value(transport.pubsub.subscription)') || old=
  [ -n "$old" ] || die "cannot find the subscription of $trigger: nothing was changed for $fn"
  ensure_subscription "$sub" "$(source_topic "$name")" "" "" "$(ack_deadline "$name")" "$DLQ_TOPIC" ordered
  grant roles/pubsub.subscriber "serviceAccount:$PUBSUB_AGENT" "$sub" pubsub subscriptions
  mutate pubsub snapshots create "$sub-migrate" --subscription="$old"
  mutate functions delete "$fn" --gen2 --region="$REGION" --quiet
  # The old deploy let Pub/Sub's agent mint tokens of the function's own account: no longer used.
  mutate iam service-accounts remove-iam-policy-binding "$(service_account "$name")" \
    --member="serviceAccount:$PUBSUB_AGENT" --role=roles/iam.serviceAccountTokenCreator --format=none || true
}

finish_migration() {
  local sub
  sub=$(push_subscription "$1")
  if [ "$DRY_RUN" = 1 ] || ! exists pubsub snapshots describe "$sub-migrate"; then return 0; fi
  mutate pubsub subscriptions seek "$sub" --snapshot="$sub-migrate"
  mutate pubsub snapshots delete "$sub-migrate" --quiet
}

# Dead letters (from either subscription) are also pushed to the responder, which sends the user
# the stored reply or an apology, once (common/responder/responder.py, give_up). The push carries an OIDC
# token of the responder's push identity, as its own subscription does. No dead-letter policy or
# ordering here, so nothing loops: a failed push is retried with backoff while the message is
# retained (7 days). Never expires: dead letters may not come for months.
ensure_dead_letter_route() {
  local have
  step "responder: dead letters to $PREFIX-responder ($APOLOGY_SUBSCRIPTION)"
  have=$(query pubsub subscriptions describe "$APOLOGY_SUBSCRIPTION" --format='value(topic)') || have=
  if [ -n "$have" ] && [ "$have" != "projects/$PROJECT/topics/$DLQ_TOPIC" ]; then
    # TOPIC_DEAD_LETTER changed: the old topic gets no more dead letters; make it again.
    mutate pubsub subscriptions delete "$APOLOGY_SUBSCRIPTION" --quiet
  fi
  ensure_subscription "$APOLOGY_SUBSCRIPTION" "$DLQ_TOPIC" "$(function_url responder)" \
    "$(invoker_account responder)" "$(ack_deadline responder)" "" ""
}

# Meta's sent/delivered statuses of our reply parts (their callback data, common/bus/part_sent.py)
# reach the responder on a subscription of their own: no ordering (a status must not wait
# behind the user's messages), no dead-letter topic (a status that cannot be recorded is retried
# while it is kept, 10 minutes, then it no longer matters). As the responder's push identity.
ensure_status_route() {
  step "responder: Meta's statuses of sent parts ($STATUS_SUBSCRIPTION)"
  ensure_subscription "$STATUS_SUBSCRIPTION" "$TOPIC_STATUS" "$(function_url responder)" \
    "$(invoker_account responder)" "$(ack_deadline responder)" "" "" "$STATUS_SUBSCRIPTION_RETENTION"
}

# duration_seconds 7d|10m|…: what describe shows for a retention (seconds).
duration_seconds() {
  local number=${1%[smhd]}
  case $1 in *d) say $((number * 86400)) ;; *h) say $((number * 3600)) ;; *m) say $((number * 60)) ;; *) say "$number" ;; esac
}

print_next_steps() {
  local url
  step "Done"
  case " $SELECTED " in *" webhook "*) ;; *) return 0 ;; esac
  url=$(query functions describe "$PREFIX-webhook" --gen2 --region="$REGION" \
    --format='value(serviceConfig.uri)') || url="https://<the webhook URL>"
  cat <<EOF
Webhook URL: $url

In the Meta app (developers.facebook.com > your app > WhatsApp > Configuration > Webhook > Edit):
  1. Callback URL: $url
  2. Verify token: the value of WHATSAPP_VERIFY_TOKEN (it is in Secret Manager; to read it:
     gcloud secrets versions access latest --secret=$(secret_name WHATSAPP_VERIFY_TOKEN) --project=$PROJECT)
  3. "Verify and save", then under "Webhook fields" subscribe to "messages".
  4. Send your business number a message and watch:
     gcloud functions logs read --region=$REGION --project=$PROJECT --limit=50
Messages that failed $MAX_DELIVERY_ATTEMPTS times wait in $DLQ_SUBSCRIPTION:
     gcloud pubsub subscriptions pull $DLQ_SUBSCRIPTION --project=$PROJECT --limit=10
Set up the alert on WhatsApp token errors (docs/logs.md, "Alerts"): log filter
     severity=ERROR AND jsonPayload.alert="graph_auth"
EOF
  case " $SELECTED " in
    *" responder "*) say "They also go to $PREFIX-responder ($APOLOGY_SUBSCRIPTION): the user gets the reply or an apology." ;;
  esac
}

# Fails early, before anything changes, when gcloud is not logged in or the project is wrong.
preflight() {
  local number
  number=$(query projects describe "$PROJECT" --format='value(projectNumber)') || [ "$DRY_RUN" = 1 ] ||
    die "cannot read project $PROJECT: check the id, and run gcloud auth login"
  PUBSUB_AGENT="service-${number:-PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# SELECTED from the end of the pipeline to its start: responder, transcriber, webhook.
downstream_first() {
  local name
  for name in responder transcriber webhook; do
    case " $SELECTED " in *" $name "*) say "$name" ;; esac
  done
}

deploy() {
  local name var vars=""
  RECREATE=""
  preflight
  check_topics_are_ours
  enable_apis
  step "Secrets (Secret Manager)"
  for name in $SELECTED; do
    for var in $(secret_vars "$name"); do
      case " $vars " in *" $var "*) ;; *) vars+=" $var" && ensure_secret "$var" ;; esac
    done
  done
  ensure_messaging
  case " $SELECTED " in *" responder "*) ensure_firestore ;; esac
  # Downstream first: each function understands what the one before it sends by the time that one
  # is deployed (an older transcriber, given a text from the new webhook, would apologise for it).
  for name in $(downstream_first); do
    ensure_identity "$name"
    if [ "$name" = webhook ]; then deploy_function webhook; else deploy_pushed "$name"; fi
    if [ "$name" = responder ]; then
      ensure_dead_letter_route
      ensure_status_route
    fi
  done
  print_next_steps
  [ -z "$RECREATE" ] || die "deployed, but a setting could not be changed in place:$RECREATE"
}

confirm_destroy() {
  if [ "$ASSUME_YES" = 1 ] || [ "$DRY_RUN" = 1 ]; then return 0; fi
  local answer=""
  printf 'This deletes WhatsBot (%s) from project %s. Type the project id to go on: ' "$SELECTED" "$PROJECT"
  read -r answer || true
  [ "$answer" = "$PROJECT" ] || die "not confirmed: nothing was deleted"
}

destroy() {
  local name fn sa var sub
  confirm_destroy
  for name in $SELECTED; do
    fn="$PREFIX-$name" sa=$(service_account "$name")
    step "$name: delete"
    # What pushes to the function goes first: it names the function and the push identity.
    if [ "$name" = responder ]; then
      for sub in "$APOLOGY_SUBSCRIPTION" "$STATUS_SUBSCRIPTION"; do
        if exists pubsub subscriptions describe "$sub"; then mutate pubsub subscriptions delete "$sub" --quiet; fi
      done
    fi
    if [ "$name" != webhook ]; then
      sub=$(push_subscription "$name")
      if exists pubsub subscriptions describe "$sub"; then mutate pubsub subscriptions delete "$sub" --quiet; fi
      if exists pubsub snapshots describe "$sub-migrate"; then mutate pubsub snapshots delete "$sub-migrate" --quiet; fi
    fi
    if exists functions describe "$fn" --gen2 --region="$REGION"; then
      mutate functions delete "$fn" --gen2 --region="$REGION" --quiet
    fi
    if [ "$name" != webhook ] && exists iam service-accounts describe "$(invoker_account "$name")"; then
      mutate iam service-accounts delete "$(invoker_account "$name")" --quiet
    fi
    if exists iam service-accounts describe "$sa"; then
      # A project-level grant would outlive its account as "deleted:serviceAccount:…".
      [ "$name" != responder ] || mutate projects remove-iam-policy-binding "$PROJECT" \
        --member="serviceAccount:$sa" --role=roles/datastore.user --condition=None --format=none || true
      mutate iam service-accounts delete "$sa" --quiet
    fi
  done
  [ -z "$ONLY" ] || return 0
  step "Shared resources: topics, dead letters, secrets"
  if exists pubsub subscriptions describe "$DLQ_SUBSCRIPTION"; then
    mutate pubsub subscriptions delete "$DLQ_SUBSCRIPTION" --quiet
  fi
  for name in "$TOPIC_AUDIO" "$TOPIC_TEXT" "$TOPIC_STATUS" "$DLQ_TOPIC"; do
    if exists pubsub topics describe "$name"; then mutate pubsub topics delete "$name" --quiet; fi
  done
  for var in $SECRET_VARS $(action_secrets); do
    name=$(secret_name "$var")
    if exists secrets describe "$name"; then mutate secrets delete "$name" --quiet; fi
  done
  say "Firestore and its data are kept (gcloud firestore databases delete --database='(default)' removes them)."
}

# ------------------------------------------------------------------------------ main
main() {
  DRY_RUN=0 ASSUME_YES=0 MODE=deploy ONLY="" STAGE_DIR=""
  while [ $# -gt 0 ]; do
    case $1 in
      --dry-run) DRY_RUN=1 ;;
      --destroy) MODE=destroy ;;
      --yes | -y) ASSUME_YES=1 ;;
      --only) [ $# -ge 2 ] || die "--only needs a function name" && ONLY=$2 && shift ;;
      --only=*) ONLY=${1#*=} ;;
      --stage-only) [ $# -ge 2 ] || die "--stage-only needs a folder" && STAGE_DIR=$2 && shift ;;
      --stage-only=*) STAGE_DIR=${1#*=} ;;
      -h | --help) usage && return 0 ;;
      *) usage >&2 && die "unknown option: $1" ;;
    esac
    shift
  done
  case $ONLY in "" | webhook | transcriber | responder) ;; *) die "--only takes webhook, transcriber or responder" ;; esac
  SELECTED=${ONLY:-$ALL_FUNCTIONS}

  if [ -n "$STAGE_DIR" ]; then
    for name in $SELECTED; do stage "$name" "$STAGE_DIR"; done
    return 0
  fi
  load_env_file "${DEPLOY_ENV_FILE:-$ROOT/.env}"
  configure
  [ "$DRY_RUN" = 1 ] || command -v gcloud >/dev/null ||
    die "gcloud not found: install the Google Cloud CLI, then gcloud auth login"
  [ "$DRY_RUN" = 0 ] || say "Dry run: '+' lines would change project $PROJECT, '?' lines would read it; nothing runs."
  BUILD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/whatsbot-deploy.XXXXXX")
  trap 'rm -rf "$BUILD_DIR"' EXIT
  "$MODE"
}

main "$@"
