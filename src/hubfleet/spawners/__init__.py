"""Spawners: ProfileSpawner, a profile-aware KubeSpawner subclass with group-restricted profiles, server-side validation, quotas, per-user storage and hardened pods. (Issue #4.)"""
