// Package cli is vkp's command line: serve, validate and version.
//
// Exit codes are part of the interface (scripts and orchestrators read them):
//
//	0  ExitOK          success; serve also exits 0 after a graceful drain
//	1  ExitRuntime     serve failed while running (listener error, ...)
//	2  ExitUsage       bad flags or arguments
//	3  ExitBadConfig   the config file is missing, unreadable or invalid
//
// Every flag has an environment twin (VKP_CONFIG, VKP_LISTEN, ...), so a
// container can be configured without a command line.
package cli
