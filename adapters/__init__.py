"""Channel adapters: one folder per channel protocol, all behind `adapters.base.ChannelAdapter`."""
