package main

import (
	"testing"

	"github.com/hearth-gateway/hearth/shared/conf/conftest"
)

func TestREADMEConfigTable(t *testing.T) {
	conftest.CheckREADME(t, "../../../README.md", "hearth-standalone", &config{})
}
