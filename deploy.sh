#!/usr/bin/env bash
# Deploy WhatsBot to Google Cloud: APIs, secrets, topics, dead-lettering, Firestore, one service
# account per function and three gen2 functions. Safe to run again: it describes before it
# creates, so a second run only updates. `./deploy.sh --help` for the options.
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
names another file). See README.md, section "Deploy", for every variable.

  --dry-run        print every gcloud command it would run; run none (reads are shown as "?")
  --only NAME      deploy (or destroy) one function and what it needs
  --destroy        delete what this script created (asks first; Firestore data is kept)
  --yes, -y        do not ask before --destroy
  --stage-only DIR stage each function's source (its folder + common/) into DIR/NAME; no gcloud
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
  : "${GOOGLE_CLOUD_PROJECT:?set GOOGLE_CLOUD_PROJECT (environment or .env) to your project id}"
  [ "$GOOGLE_CLOUD_PROJECT" != whatsbot-local ] ||
    die "GOOGLE_CLOUD_PROJECT is whatsbot-local, the emulators' id: set it to your Google Cloud project"
  PROJECT=$GOOGLE_CLOUD_PROJECT
  REGION=${REGION:-us-central1}
  PREFIX=${NAME_PREFIX:-whatsbot}
  TOPIC_AUDIO=${TOPIC_AUDIO:-whatsapp-audio}
  TOPIC_TEXT=${TOPIC_TEXT:-whatsapp-text}
  DLQ_TOPIC=${TOPIC_DEAD_LETTER:-$PREFIX-dead-letter}
  DLQ_SUBSCRIPTION=$DLQ_TOPIC-inspect
  APOLOGY_SUBSCRIPTION=$PREFIX-dead-letter-apology
  MAX_DELIVERY_ATTEMPTS=${MAX_DELIVERY_ATTEMPTS:-5}
  FIRESTORE_LOCATION=${FIRESTORE_LOCATION:-$REGION}
  if ! [[ $MAX_DELIVERY_ATTEMPTS =~ ^[0-9]+$ ]] || ((MAX_DELIVERY_ATTEMPTS < 5 || MAX_DELIVERY_ATTEMPTS > 100)); then
    die "MAX_DELIVERY_ATTEMPTS must be 5..100 (Pub/Sub's limits), got $MAX_DELIVERY_ATTEMPTS"
  fi
  # Never prompt: a half-answered prompt in the middle of a deploy helps nobody.
  export CLOUDSDK_CORE_DISABLE_PROMPTS=1
}

entry_point() { case $1 in webhook) say webhook ;; transcriber) say transcribe ;; responder) say respond ;; esac }
trigger_topic() { case $1 in transcriber) say "$TOPIC_AUDIO" ;; responder) say "$TOPIC_TEXT" ;; esac }
service_account() { say "$PREFIX-$1@$PROJECT.iam.gserviceaccount.com"; }

# The environment variable each secret is read from, and its Secret Manager name.
secret_vars() { case $1 in webhook) say "WHATSAPP_APP_SECRET WHATSAPP_VERIFY_TOKEN" ;; *) say "WHATSAPP_TOKEN OPENAI_API_KEY" ;; esac }
secret_name() {
  case $1 in
    WHATSAPP_APP_SECRET) say "$PREFIX-app-secret" ;;
    WHATSAPP_VERIFY_TOKEN) say "$PREFIX-verify-token" ;;
    WHATSAPP_TOKEN) say "$PREFIX-whatsapp-token" ;;
    OPENAI_API_KEY) say "$PREFIX-openai-api-key" ;;
  esac
}

# Plain settings each function receives when they are set (README, configuration). Secrets are
# never among them; EXTRA_ENV_VARS="A B" passes more names to every function.
env_vars() {
  case $1 in
    webhook) say "PUBLISH_TIMEOUT_SECONDS MAX_BODY_BYTES ALLOWED_USERS MAX_MESSAGE_AGE_HOURS ECHO_PAUSE_HOURS" ;;
    transcriber) say "WHATSAPP_API_BASE WHATSAPP_API_VERSION GRAPH_TIMEOUT_SECONDS OPENAI_BASE_URL OPENAI_TIMEOUT_SECONDS
      OPENAI_MAX_RETRIES TRANSCRIBE_BACKEND TRANSCRIBE_MODEL TRANSCRIBE_LANGUAGE GOOGLE_SPEECH_ENDPOINT MAX_AUDIO_BYTES
      MAX_AUDIO_SECONDS PUBLISH_TIMEOUT_SECONDS
      MAX_MESSAGE_AGE_HOURS MAX_AUDIO_SECONDS_PER_DAY LIMITS_TIMEZONE" ;;
    responder) say "WHATSAPP_API_BASE WHATSAPP_API_VERSION GRAPH_TIMEOUT_SECONDS OPENAI_BASE_URL OPENAI_MODEL
      OPENAI_TIMEOUT_SECONDS OPENAI_MAX_RETRIES SYSTEM_PROMPT VOICE_PROMPT VOICE_MODE HELP_TEXT
      RESET_TEXT UNSUPPORTED_TEXT VOICE_FAILED_TEXT MODEL_ERROR_TEXT HISTORY_MAX_CHARS
      HISTORY_MAX_TURNS HISTORY_TTL_DAYS CLAIM_LEASE_SECONDS CLAIM_TTL_DAYS OPENAI_MAX_TOKENS
      ADMIN_USERS MAX_TURNS_PER_DAY MAX_TOKENS_PER_DAY MAX_AUDIO_SECONDS_PER_DAY LIMITS_TIMEZONE DAILY_TOKEN_BUDGET BUDGET_SHARDS GUARDRAILS_CACHE_SECONDS MAX_REPLY_PARTS MAX_MESSAGE_AGE_HOURS ECHO_PAUSE_HOURS NOT_ALLOWED_TEXT LIMIT_TEXT BUSY_TEXT SHORTENED_TEXT" ;;
  esac
  say "${EXTRA_ENV_VARS:-}"
}

# Sizes per function; each overridable as NAME_KEY, e.g. RESPONDER_MEMORY=1Gi. Concurrency above
# 1 needs a whole vCPU on gen2, hence cpu=1; the transcriber gets room to decode audio.
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
  printf '%s' "${!var:-${sizes[$index]}}"
}

# ack_deadline: Pub/Sub waits for the responder's answer as long as the responder may run (gcloud
# takes 120s, 2m, 1h or plain seconds), within Pub/Sub's 10..600 seconds.
ack_deadline() {
  local timeout seconds=600
  timeout=$(setting responder TIMEOUT)
  if [[ $timeout =~ ^([0-9]+)(s|m|h)?$ ]]; then
    seconds=$((10#${BASH_REMATCH[1]}))
    case ${BASH_REMATCH[2]} in m) seconds=$((seconds * 60)) ;; h) seconds=$((seconds * 3600)) ;; esac
  fi
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
    artifactregistry.googleapis.com eventarc.googleapis.com pubsub.googleapis.com \
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
  step "Pub/Sub topics and the dead-letter topic"
  for topic in "$TOPIC_AUDIO" "$TOPIC_TEXT" "$DLQ_TOPIC"; do
    exists pubsub topics describe "$topic" || mutate pubsub topics create "$topic"
  done
  # Dead letters are kept for inspection; never-expiring, since it may sit idle for months.
  exists pubsub subscriptions describe "$DLQ_SUBSCRIPTION" ||
    mutate pubsub subscriptions create "$DLQ_SUBSCRIPTION" --topic="$DLQ_TOPIC" \
      --message-retention-duration=7d --expiration-period=never
  # Pub/Sub itself moves a message to the dead-letter topic, as its service agent.
  grant roles/pubsub.publisher "serviceAccount:$PUBSUB_AGENT" "$DLQ_TOPIC" pubsub topics
}

ensure_firestore() {
  step "Firestore (claims and conversation history)"
  local type collection ttls
  type=$(query firestore databases describe --database='(default)' --format='value(type)') || type=
  case $type in
    FIRESTORE_NATIVE) say "   database (default): native mode" ;;
    "") mutate firestore databases create --database='(default)' --location="$FIRESTORE_LOCATION" \
      --type=firestore-native ;;
    *) die "the (default) Firestore database is in $type; the responder needs native mode (use another project)" ;;
  esac
  # Old claims and idle conversations expire by themselves (the code sets expireAt).
  for collection in claims conversations; do
    ttls=$(query firestore fields ttls list --collection-group="$collection" --format='value(name)') || ttls=
    if [[ $ttls == */fields/expireAt* ]]; then
      say "   TTL on $collection.expireAt: already set"
    else
      mutate firestore fields ttls update expireAt --collection-group="$collection" --enable-ttl --async
    fi
  done
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
    webhook)
      grant roles/pubsub.publisher "$member" "$TOPIC_AUDIO" pubsub topics
      grant roles/pubsub.publisher "$member" "$TOPIC_TEXT" pubsub topics ;;
    transcriber) grant roles/pubsub.publisher "$member" "$TOPIC_TEXT" pubsub topics ;;
    responder) # Firestore has no per-collection IAM: datastore.user is its narrowest data role
      retry mutate projects add-iam-policy-binding "$PROJECT" --member="$member" \
        --role=roles/datastore.user --condition=None --format=none ;;
  esac
  # Event functions: the same account is the Eventarc trigger's identity, and Pub/Sub mints
  # its push tokens (needed on projects created before April 2021).
  if [ "$name" != webhook ]; then
    grant roles/iam.serviceAccountTokenCreator "serviceAccount:$PUBSUB_AGENT" "$sa" iam service-accounts
  fi
}

# stage NAME DIR: the function's folder plus common/, which is all that gcloud uploads.
stage() {
  local name=$1 dest="$2/$1"
  [ -f "$ROOT/functions/$name/main.py" ] || die "functions/$name/main.py is missing"
  rm -rf "$dest" && mkdir -p "$dest"
  cp -R "$ROOT/functions/$name/." "$dest/"
  cp -R "$ROOT/common" "$dest/common"
  find "$dest" -name __pycache__ -type d -prune -exec rm -rf {} +
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
  [ "$name" = responder ] || yaml_entry TOPIC_TEXT "$TOPIC_TEXT"
  [ "$name" != webhook ] || yaml_entry TOPIC_AUDIO "$TOPIC_AUDIO"
  for var in $(env_vars "$name"); do
    [ -n "${!var:-}" ] || continue
    case " $SECRET_VARS " in *" $var "*) continue ;; esac # secrets only ever via --set-secrets
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
    --env-vars-file="$BUILD_DIR/$name.env.yaml" --set-secrets="$secrets")
  if [ "$name" = webhook ]; then
    args+=(--trigger-http --allow-unauthenticated) # Meta calls it; the signature check guards it
  else
    args+=(--trigger-topic="$(trigger_topic "$name")" --trigger-service-account="$sa" --retry)
  fi
  mutate "${args[@]}"
}

# The Eventarc trigger made by --trigger-topic owns the subscription that pushes to the function:
# let its service account invoke the function, and give the subscription a dead-letter topic.
connect_trigger() {
  local name=$1 fn="$PREFIX-$1" trigger subscription
  trigger=$(query functions describe "$fn" --gen2 --region="$REGION" --format='value(eventTrigger.trigger)') ||
    trigger=
  [ -n "$trigger" ] || [ "$DRY_RUN" = 1 ] || die "$fn has no Eventarc trigger"
  trigger=${trigger:-TRIGGER_OF_$(upper "$fn")}
  subscription=$(query eventarc triggers describe "${trigger##*/}" --location="$REGION" \
    --format='value(transport.pubsub.subscription)') || subscription=
  [ -n "$subscription" ] || [ "$DRY_RUN" = 1 ] || die "no subscription found for trigger $trigger"
  subscription=${subscription:-SUBSCRIPTION_OF_$(upper "$fn")_TRIGGER}
  retry mutate functions add-invoker-policy-binding "$fn" --region="$REGION" \
    --member="serviceAccount:$(service_account "$name")" --format=none
  mutate pubsub subscriptions update "$subscription" --dead-letter-topic="$DLQ_TOPIC" \
    --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS"
  grant roles/pubsub.subscriber "serviceAccount:$PUBSUB_AGENT" "$subscription" pubsub subscriptions
}

# Dead letters (from either trigger) are also pushed to the responder, which sends the user the
# stored reply or an apology, once (common/responder.py, give_up). The push carries an OIDC token
# of the responder's account, which may invoke it (connect_trigger) and whose tokens the Pub/Sub
# agent may mint (ensure_identity). No dead-letter policy here, so nothing loops: a failed push is
# retried with backoff while the message is retained (7 days). Never expires, like the inspection
# subscription: dead letters may not come for months.
ensure_dead_letter_route() {
  local fn="$PREFIX-responder" sa url ack have want topic settings
  sa=$(service_account responder)
  step "responder: dead letters to $fn ($APOLOGY_SUBSCRIPTION)"
  url=$(query functions describe "$fn" --gen2 --region="$REGION" --format='value(serviceConfig.uri)') || url=
  [ -n "$url" ] || [ "$DRY_RUN" = 1 ] || die "$fn has no URL"
  url=${url:-https://URL_OF_$(upper "$fn")}
  ack=$(ack_deadline)
  topic="projects/$PROJECT/topics/$DLQ_TOPIC"
  settings=(--push-endpoint="$url" --push-auth-service-account="$sa" --ack-deadline="$ack"
    --min-retry-delay=10s --max-retry-delay=600s)
  if exists pubsub subscriptions describe "$APOLOGY_SUBSCRIPTION"; then
    have=$(query pubsub subscriptions describe "$APOLOGY_SUBSCRIPTION" \
      --format='value(topic,pushConfig.pushEndpoint,pushConfig.oidcToken.serviceAccountEmail,ackDeadlineSeconds)') ||
      have=
    want="$topic"$'\t'"$url"$'\t'"$sa"$'\t'"$ack"
    if [ "$have" = "$want" ]; then
      say "   $APOLOGY_SUBSCRIPTION: unchanged"
      return 0
    fi
    if [[ $have == "$topic"$'\t'* ]]; then
      mutate pubsub subscriptions update "$APOLOGY_SUBSCRIPTION" "${settings[@]}"
      return 0
    fi
    # A subscription cannot change topic (TOPIC_DEAD_LETTER changed): make it again.
    mutate pubsub subscriptions delete "$APOLOGY_SUBSCRIPTION" --quiet
  fi
  mutate pubsub subscriptions create "$APOLOGY_SUBSCRIPTION" --topic="$DLQ_TOPIC" "${settings[@]}" \
    --expiration-period=never
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

deploy() {
  local name var vars=""
  preflight
  enable_apis
  step "Secrets (Secret Manager)"
  for name in $SELECTED; do
    for var in $(secret_vars "$name"); do
      case " $vars " in *" $var "*) ;; *) vars+=" $var" && ensure_secret "$var" ;; esac
    done
  done
  ensure_messaging
  case " $SELECTED " in *" responder "*) ensure_firestore ;; esac
  for name in $SELECTED; do
    ensure_identity "$name"
    deploy_function "$name"
    [ "$name" = webhook ] || connect_trigger "$name"
    [ "$name" != responder ] || ensure_dead_letter_route
  done
  print_next_steps
}

confirm_destroy() {
  if [ "$ASSUME_YES" = 1 ] || [ "$DRY_RUN" = 1 ]; then return 0; fi
  local answer=""
  printf 'This deletes WhatsBot (%s) from project %s. Type the project id to go on: ' "$SELECTED" "$PROJECT"
  read -r answer || true
  [ "$answer" = "$PROJECT" ] || die "not confirmed: nothing was deleted"
}

destroy() {
  local name fn sa var
  confirm_destroy
  for name in $SELECTED; do
    fn="$PREFIX-$name" sa=$(service_account "$name")
    step "$name: delete"
    # The push of dead letters to the responder goes first: it names the responder and its account.
    if [ "$name" = responder ] && exists pubsub subscriptions describe "$APOLOGY_SUBSCRIPTION"; then
      mutate pubsub subscriptions delete "$APOLOGY_SUBSCRIPTION" --quiet
    fi
    if exists functions describe "$fn" --gen2 --region="$REGION"; then
      mutate functions delete "$fn" --gen2 --region="$REGION" --quiet # its trigger goes with it
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
  for name in "$TOPIC_AUDIO" "$TOPIC_TEXT" "$DLQ_TOPIC"; do
    if exists pubsub topics describe "$name"; then mutate pubsub topics delete "$name" --quiet; fi
  done
  for var in $SECRET_VARS; do
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
