// Package licenses holds the test that keeps copyleft code out of Gantry:
// it lists every module in the build graph of every go.mod in the
// repository (Gantry's and each tools module's under test/tools), reads
// each module's license files from the Go module cache and classifies them
// with github.com/google/licensecheck. Which licenses are accepted, and why,
// is in the README's "Licenses" section; reviewed exceptions are in
// allowed.txt beside this file.
package licenses
