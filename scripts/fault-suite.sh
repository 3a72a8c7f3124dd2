#!/usr/bin/env bash
# The fault suite in one command: each fault the hardening work covers, as the test that injects it
# into a lab of its own and checks that no request fails and no state is lost. `make test` runs
# the same tests; this runs only them, one after another, and prints a line per fault with its
# result and time. As root, from the repository root: scripts/fault-suite.sh
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins -q || exit 1

# fault | package | test target | test name
faults=(
  "agent kill -9 under load (300 requests, 0 may fail)|cilia|service_lb|agent_killed_under_load_loses_no_request"
  "backends deleted under load (0 requests may fail)|cilia|service_lb|deleting_backends_under_load_fails_no_request"
  "agent kill -9 and config restart under DNS lookups (0 may fail)|cilia|dns|lookups_go_on_across_an_agent_kill_and_a_config_restart"
  "operator paused past its TTL, then resumed; then killed|cilia|operator_fencing|a_paused_or_killed_leader_never_writes_beside_its_successor"
  "datastore frozen 60 s (SIGSTOP) with traffic and ARP|cilia|l2_announcements|a_graceful_restart_hands_over_cleanly_and_a_datastore_outage_changes_nothing"
  "a node killed (power loss), then booted|cilia|node_lifecycle|a_killed_node_leaves_every_service_and_comes_back_with_its_pods"
  "a corrupt stored value (etcd)|store|etcd|an_unreadable_value_is_skipped_per_key_and_never_taken_for_a_deletion"
  "a corrupt stored value in a lab: counted by every agent and the operator, a status warning|cilia|telemetry|metrics_and_health_answer_move_with_traffic_and_status_names_a_stopped_agent"
  "a stored Service that does not parse keeps its LB IP|operator|operator|a_service_that_does_not_parse_keeps_its_address"
  "a full service map: the oldest Services answer, the newest wait with a condition|cilia|service_map_full|services_that_do_not_fit_wait_with_a_condition_and_get_room_when_others_go"
)

failed=0
printf '%-70s %-6s %8s\n' "fault" "result" "seconds"
for entry in "${faults[@]}"; do
  IFS='|' read -r what package target name <<<"$entry"
  start=$SECONDS
  if out=$(cargo test -q -p "$package" --test "$target" -- --exact "$name" 2>&1) &&
    grep -q "test result: ok. 1 passed" <<<"$out"; then
    result=ok
  else
    result=FAILED
    failed=$((failed + 1))
    printf '%s\n' "$out" | tail -30 >&2
  fi
  printf '%-70s %-6s %8d\n' "$what" "$result" $((SECONDS - start))
done
exit $((failed > 0))
