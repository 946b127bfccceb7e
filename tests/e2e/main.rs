//! End-to-end tests: one binary that starts the real engine (in process or as the `hookwise`
//! binary), on random ports, with temp dirs and fresh PostgreSQL databases.

mod admin;
mod admin_tls;
mod cli;
mod crash;
mod dashboard;
mod dashboard_events;
mod dashboard_ops;
mod dashboard_pages;
mod dispatch;
mod first_party;
mod fuzz_corpora;
mod ingress;
mod input_schemas;
mod lang_examples;
mod lang_go_c;
mod lang_zig_as;
mod operations;
mod outside_text;
mod plugins;
mod plugins_cli;
mod plugins_lang;
mod plugins_new;
mod plugins_run;
mod quickstart;
mod reload;
mod remote_ops;
mod rules;
mod secrets;
mod self_events;
mod serve;
mod store;
mod support;
mod transport;
mod upgrade;
