pub mod plugin_host;
