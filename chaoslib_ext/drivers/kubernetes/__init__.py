"""The kubernetes driver: pods in a cluster, through chaostoolkit-kubernetes and Chaos Mesh."""
