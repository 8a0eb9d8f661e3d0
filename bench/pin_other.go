//go:build !linux

package main

import "errors"

func cpuSplit() (proxy, rest []int, err error) {
	return nil, nil, errors.New("bench: --pin works on Linux only")
}

func pinSelf([]int) error { return nil }

func pinArgv(_ []int, argv []string) []string { return argv }

func cpuList([]int) string { return "" }
