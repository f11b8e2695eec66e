/** Renderer entry: picks the transport once, provides it to the stores, mounts the inspector. */
import { createApp } from 'vue';
import { createPinia } from 'pinia';
import App from './App.vue';
import { createBridgeClient } from './client';
import { clientKey, storageKey } from './injection';
import './styles.css';

const app = createApp(App);
app.provide(clientKey, createBridgeClient());
app.provide(storageKey, {
  get: (key) => window.localStorage.getItem(key),
  set: (key, value) => window.localStorage.setItem(key, value),
});
app.use(createPinia()).mount('#app');
